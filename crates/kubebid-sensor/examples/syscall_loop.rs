//! Load for bench/sensor-perf.sh: a system call loop no rule needs, or an exec loop.
//!
//!   syscall_loop getpid <n>       n getpid calls
//!   syscall_loop openclose <n>    n open/close pairs of an unwatched file (/dev/null)
//!   syscall_loop exec <n>         n fork+execs of /bin/true, one after another
//!
//! Prints `<mode>: <ns per operation> ns/op`.

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(mode), Some(n)) = (
        args.first(),
        args.get(1).and_then(|n| n.parse::<u64>().ok()),
    ) else {
        eprintln!("usage: syscall_loop getpid|openclose|exec <n>");
        std::process::exit(2);
    };
    let started = Instant::now();
    match mode.as_str() {
        "getpid" => {
            for _ in 0..n {
                std::hint::black_box(nix::unistd::getpid());
            }
        }
        "openclose" => {
            for _ in 0..n {
                drop(std::hint::black_box(std::fs::File::open("/dev/null")));
            }
        }
        "exec" => {
            for _ in 0..n {
                let _ = std::process::Command::new("/bin/true").status();
            }
        }
        _ => {
            eprintln!("unknown mode {mode}");
            std::process::exit(2);
        }
    }
    let ns = started.elapsed().as_nanos() as f64 / n.max(1) as f64;
    println!("{mode}: {ns:.1} ns/op");
}
