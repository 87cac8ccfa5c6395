//! No byte string makes a decoder panic, and no declared length makes one allocate more than a
//! small multiple of its input: lengths inside bodies are checked against the bytes present
//! before anything is allocated.
//!
//! This binary has a counting global allocator, so it holds exactly one test (tests in one
//! binary share the allocator).

// A counting allocator is the one place this crate needs `unsafe`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator, which upholds the
// GlobalAlloc contract; the only addition is an atomic counter.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Largest = Largest;

/// Bodies that look like real ones but with hostile length fields.
fn hostile_lengths() -> impl Strategy<Value = Vec<u8>> {
    (any::<i64>(), any::<i64>(), proptest::collection::vec(any::<u8>(), 0..200)).prop_map(|(a, b, tail)| {
        let mut v = Vec::with_capacity(16 + tail.len());
        v.extend_from_slice(&a.to_be_bytes());
        v.extend_from_slice(&b.to_be_bytes());
        v.extend_from_slice(&tail);
        v
    })
}

#[test]
fn decoders_never_panic_and_allocate_in_proportion() {
    let mut runner = TestRunner::new(Config { cases: 3000, ..Config::default() });
    let inputs = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..1200),
        hostile_lengths(),
        "[ -~\n\\[\\]=#]{0,400}".prop_map(String::into_bytes),
    ];
    runner
        .run(&inputs, |data| {
            LARGEST.store(0, Ordering::Relaxed);
            fdfs_core::fuzzing::decode_everything(&data);
            let largest = LARGEST.load(Ordering::Relaxed);
            // Text conversions copy the input a few times; nothing may scale with a declared
            // length. 8 KiB covers fixed-size buffers (e.g. error strings).
            prop_assert!(largest <= 4 * data.len() + 8192, "{largest} bytes for {} input bytes", data.len());
            Ok(())
        })
        .unwrap();
}
