//! Benchmark of a catalog load (issue 14: 1M one-minute bars into the engine in ≤ 50 ms).
//!
//! `cargo build --release --examples && target/release/examples/catalog_load CATALOG SYMBOL [REPEAT]`
//!
//! Times the load a run does (`catalog::load_for_run`: open the catalog, resolve the dataset,
//! read and decode its partitions, check the rows, derive the floats) inside one process, so
//! process start and the interpreter are not in the figure. Prints the best and median of
//! REPEAT loads (default 9), wall clock and this process's CPU time per load.

use std::time::{Duration, Instant};

use rustybt::catalog::{RunRequest, load_for_run};

fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to a valid pointer. The process clock counts
    // every thread of this process (the partitions are decoded on several).
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(root), Some(symbol)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: catalog_load CATALOG SYMBOL [REPEAT]");
        std::process::exit(2);
    };
    let repeat: usize = args.get(3).and_then(|r| r.parse().ok()).unwrap_or(9);
    let symbols = vec![symbol.clone()];
    let request = RunRequest {
        symbols: &symbols,
        timeframe: None,
        source: None,
        start_ns: None,
        end_ns: None,
        allow_bad_data: true,
    };
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    let mut rows = 0;
    for _ in 0..repeat {
        let (wall, cpu) = (Instant::now(), cpu_time());
        let load = load_for_run(std::path::Path::new(root), &request).unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(1)
        });
        walls.push(wall.elapsed());
        cpus.push(cpu_time() - cpu);
        rows = load.series[0].len();
    }
    walls.sort();
    cpus.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "load of {rows} bars: best {:.1} ms, median {:.1} ms wall; CPU best {:.1} ms, median {:.1} ms ({repeat} loads)",
        ms(walls[0]),
        ms(walls[repeat / 2]),
        ms(cpus[0]),
        ms(cpus[repeat / 2]),
    );
}
