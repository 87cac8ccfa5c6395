//! Every decoder and parser of fdfs-core on arbitrary bytes: header, all bodies in every
//! profile, streamed heads, file IDs, `.conf` files. Run with `ci/fuzz.sh`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fdfs_core::fuzzing::decode_everything(data);
});
