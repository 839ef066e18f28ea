//! The `kafka-relay` binary; everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    kafka_relay::cli::main()
}
