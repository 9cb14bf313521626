//! Loom models of the custom protocols. Run with `ci/loom.sh` (or
//! `RUSTFLAGS="--cfg loom" cargo test -p abacus --lib --release loom`).

use loom::thread;

use super::cell::{Cell, CellRef, MetricKind, ShortName};
use super::collect::{Collector, Retiring, collect_retiring};
use super::local::IdPool;
use super::series::Series;
use crate::key::Key;
use crate::snapshot::{SeriesSnapshot, Unit, Value};
use crate::sync::{self, Arc, Mutex};

fn counter_total(out: &[Option<SeriesSnapshot>]) -> u64 {
    out.iter()
        .flatten()
        .map(|s| match s.value {
            Value::Counter(n) => n,
            _ => 0,
        })
        .sum()
}

/// Runs `f` as a loom model, on a model thread with a 1 MiB stack: a cell (a counter cell
/// too holds a whole histogram) is built on the stack, which overflows the coroutine stack
/// loom gives the model's main thread.
fn model<F: Fn() + Sync + Send + 'static>(f: F) {
    let f = std::sync::Arc::new(f);
    loom::model(move || {
        let f = f.clone();
        thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || f())
            .expect("model thread")
            .join()
            .expect("model thread panicked");
    });
}

/// Two threads take shard ids from the pool, write their shard's cell with plain
/// load + store, and hand the id back. Whatever interleaving, no increment is lost: the
/// pool's mutex orders a previous owner's stores before the next owner's loads.
#[test]
fn shard_handover_loses_no_plain_store() {
    model(|| {
        let pool = Arc::new(Mutex::new(IdPool::default()));
        let cells: Arc<Vec<Cell>> = Arc::new(
            (0..2)
                .map(|_| Cell::new(1, MetricKind::Counter, 4, ShortName::NONE))
                .collect(),
        );
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (pool, cells) = (pool.clone(), cells.clone());
                thread::spawn(move || {
                    let id = IdPool::acquire(&pool);
                    cells[id].add_u64::<false>(1);
                    cells[id].add_u64::<false>(1);
                    IdPool::release(&pool, id);
                })
            })
            .collect();
        // A third owner after both: must see and continue from their values.
        for t in threads {
            t.join().unwrap();
        }
        let id = IdPool::acquire(&pool);
        cells[id].add_u64::<false>(1);
        let total: u64 = cells.iter().map(Cell::scalar).sum();
        assert_eq!(total, 5);
    });
}

/// A writer holds a cached cell while the collector evicts the series. The writer may
/// write before or after retirement, and sees the flag or not; every write is reported by
/// some collection, and the retiring entry is freed only when the writer let go.
#[test]
fn retired_cells_are_read_until_the_last_writer_lets_go() {
    model(|| {
        let series = std::sync::Arc::new(Series::new(
            7,
            0,
            Key::new("c", &[]),
            MetricKind::Counter,
            Unit::None,
            4,
            false,
        ));
        let cell: CellRef = series.cell(0, 4).unwrap();
        let writer = {
            let cell = cell.clone();
            thread::spawn(move || {
                cell.add_u64::<false>(1);
                if !cell.is_retired() {
                    cell.add_u64::<false>(1);
                } else {
                    cell.add_u64::<false>(10);
                }
                drop(cell);
            })
        };
        // The collector evicts: mark, take the cells, retire them.
        let mut collector = Collector::default();
        let taken: Vec<CellRef> = {
            let mut cells = sync::write(&series.cells);
            cells.evicted = true;
            cells.by_shard.drain(..).flatten().collect()
        };
        drop(cell);
        for c in &taken {
            c.retire();
        }
        collector.zombies.push(Retiring {
            series: series.clone(),
            cells: taken,
        });
        drop(series);
        let mut out = Vec::new();
        let mut scratch = super::collect::Scratch::new(4);
        collect_retiring(&mut collector, &mut scratch, &mut out);
        writer.join().unwrap();
        collect_retiring(&mut collector, &mut scratch, &mut out);
        assert!(
            collector.zombies.is_empty(),
            "freed once the writer dropped its reference"
        );
        let total = counter_total(&out);
        assert!(
            total == 2 || total == 11,
            "every write reported exactly once, got {total}"
        );
    });
}
