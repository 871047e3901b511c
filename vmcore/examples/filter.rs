//! Stand-in for `rkdump filter` until the CLI is wired: makedumpfile-style flags.
//!
//! `filter [-d N] [-c|-l|-p|-z] [-E] [-F] [--num-threads N] IN OUT` (OUT `-` = stdout with -F),
//! `filter -R OUT < flattened` (unflatten).

use std::path::Path;

use rkdump_vmcore::write::{filter, Compression, DumpFormat, FilterOptions, Output};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = FilterOptions {
        compression: Compression::None,
        ..FilterOptions::default()
    };
    let mut pos = Vec::new();
    let mut unflatten = false;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "-d" => {
                i += 1;
                opts.dump_level = args.get(i).and_then(|v| v.parse().ok()).unwrap_or(31);
            }
            "-c" => opts.compression = Compression::Zlib,
            "-l" => opts.compression = Compression::Lzo,
            "-p" => opts.compression = Compression::Snappy,
            "-z" => opts.compression = Compression::Zstd,
            "-E" => opts.format = DumpFormat::Elf,
            "-F" => opts.flattened = true,
            "-R" => unflatten = true,
            "--num-threads" => {
                i += 1;
                opts.num_threads = args.get(i).and_then(|v| v.parse().ok()).unwrap_or(0);
            }
            a => pos.push(a.to_string()),
        }
        i += 1;
    }
    if unflatten {
        let out = Path::new(&pos[0]);
        let f = std::fs::File::options()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(out)
            .unwrap_or_else(|e| panic!("{}: {e}", out.display()));
        match rkdump_vmcore::flat::unflatten(&mut std::io::stdin().lock(), &f, out) {
            Ok(n) => eprintln!("unflattened {n} bytes"),
            Err(e) => {
                eprintln!("error: {}", rkdump_vmcore::classify::error_chain(&e));
                std::process::exit(1);
            }
        }
        return;
    }
    if pos.len() != 2 {
        eprintln!("usage: filter [-d N] [-c|-l|-p|-z] [-E] [-F] [--num-threads N] IN OUT");
        std::process::exit(2);
    }
    let t = std::time::Instant::now();
    let mut stdout = std::io::stdout().lock();
    let output = if pos[1] == "-" {
        Output::Stream(&mut stdout)
    } else {
        Output::Path(Path::new(&pos[1]))
    };
    match filter(Path::new(&pos[0]), output, &opts, &mut |_, _| {}) {
        Ok(r) => eprintln!(
            "{:.3}s {} bytes, {} pages written ({} compressed, {} raw, {} zero), counts {:?}",
            t.elapsed().as_secs_f64(),
            r.output_bytes,
            r.written_pages,
            r.compressed_pages,
            r.raw_pages,
            r.counts.zero,
            r.counts
        ),
        Err(e) => {
            eprintln!("error: {}", rkdump_vmcore::classify::error_chain(&e));
            std::process::exit(1);
        }
    }
}
