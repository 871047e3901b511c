fn main() {
    eprintln!("rkdump-init: not yet implemented");
}
