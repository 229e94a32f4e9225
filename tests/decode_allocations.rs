//! Decoding a request must not allocate per float: the number of allocations is the same for a
//! 16-value and a 65,536-value tensor. Counted with a global allocator, so this is exact, not timed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use kbatch_core::wire::{Framing, Inputs, Request, WireCodec, WireConfig};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_to_decode(values: usize, framing: Framing) -> usize {
    let codec = WireCodec::new(&WireConfig::default());
    let req = Request {
        request_id: "r-1".into(),
        created_at_ms: 1,
        deadline_ms: None,
        timeout_ms: Some(10),
        model_name: Some("cnn_lstm".into()),
        model_version: None,
        priority: None,
        reply_topic: Some("replies".into()),
        client_id: None,
        inputs: Inputs::v1(vec![values as i32], vec![0.5; values]),
    };
    let mut buf = Vec::new();
    codec.encode_request(&req, framing, &mut buf);
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let decoded = codec.decode_request(&buf).unwrap();
    let count = ALLOCATIONS.load(Ordering::SeqCst) - before;
    assert_eq!(decoded, req);
    count
}

#[test]
fn decoding_allocates_the_same_for_small_and_large_tensors() {
    for framing in [Framing::Confluent, Framing::SingleObject] {
        // Warm any lazily initialised state (schema fingerprints) before counting.
        allocations_to_decode(1, framing);
        let small = allocations_to_decode(16, framing);
        let large = allocations_to_decode(65_536, framing);
        assert_eq!(
            small, large,
            "{framing:?}: allocations grew with the tensor"
        );
        // request_id, model_name, reply_topic, shape, data.
        assert!(
            large <= 6,
            "{framing:?}: {large} allocations for one request"
        );
    }
}
