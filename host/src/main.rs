//! The `switchyard` command.

/// Every message's acknowledgement is allocated on its input's thread and freed on the
/// Kafka producer's delivery thread; mimalloc frees across threads without the arena lock
/// glibc's malloc takes (measured in `docs/performance.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    switchyard::cli::main()
}
