//! The `agegender` binary; all logic lives in the library (`agegender::cli`).

fn main() -> std::process::ExitCode {
    agegender::cli::main()
}
