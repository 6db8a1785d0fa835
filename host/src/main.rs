//! The `switchyard` command.

/// Every message's acknowledgement is allocated on its input's thread and freed on the
/// Kafka producer's delivery thread; mimalloc frees across threads without the arena lock
/// glibc's malloc takes (measured in `docs/performance.md`). With its `override` feature
/// it is `malloc` and `free` for libzmq and librdkafka too, whose messages cross threads
/// the same way (a frame received on libzmq's I/O thread is freed after the input thread
/// forwarded it; a record librdkafka copies on `produce` is freed on its broker thread).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    switchyard::cli::main()
}
