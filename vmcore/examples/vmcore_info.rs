//! Print `rkdump info`'s report for a vmcore: `cargo run --release --example vmcore_info -- PATH [--json]`.

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: vmcore_info VMCORE [--json]");
        std::process::exit(2);
    };
    match rkdump_vmcore::info(&path) {
        Ok(r) if args.next().as_deref() == Some("--json") => println!("{:#}", r.to_json()),
        Ok(r) => print!("{r}"),
        Err(e) => {
            eprintln!("error: {}", rkdump_vmcore::classify::error_chain(&e));
            std::process::exit(1);
        }
    }
}
