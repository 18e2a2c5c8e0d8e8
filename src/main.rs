use clap::Parser;

fn main() {
    // A panic is a bug in rustybt: say so in one line instead of a Rust backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error (a bug in rustybt): {info}");
    }));
    let cli = rustybt::Cli::parse();
    let code = std::panic::catch_unwind(|| rustybt::execute(cli))
        .unwrap_or(rustybt::error::ExitCode::Internal);
    std::process::exit(code as i32);
}
