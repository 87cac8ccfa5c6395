// tus-js-client in Node: uploads FILE to the tus ENDPOINT in 1 MiB PATCHes, prints the upload URL.
// Usage: node node_upload.js ENDPOINT FILE
const fs = require('fs');
const tus = require('tus-js-client');

const [endpoint, path] = process.argv.slice(2);
const data = fs.readFileSync(path);
const upload = new tus.Upload(data, {
  endpoint,
  chunkSize: 1 << 20,
  retryDelays: [],
  metadata: { filename: 'clip.bin', title: 'from tus-js-client' },
  onError: (e) => {
    console.error(`upload failed: ${e}`);
    process.exit(1);
  },
  onSuccess: () => console.log(upload.url),
});
upload.start();
