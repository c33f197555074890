//! Pure per-item work (encoding or decoding documents) spread over the machine's cores.

/// Below this many items one thread does the work: starting another costs more than it saves.
pub(crate) const SPLIT_FROM: usize = 64;

/// At most this many threads, whatever the machine has.
const MAX_THREADS: usize = 4;

/// The threads to use: the machine's cores up to [`MAX_THREADS`], asked once (the standard
/// library reads the cgroup files on every call, which costs more than a small commit).
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .min(MAX_THREADS)
    })
}

/// `f` applied to every item, results in the items' order. Large inputs are cut into one
/// contiguous chunk per core (up to [`MAX_THREADS`]), the first on the calling thread.
pub(crate) fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if items.len() < SPLIT_FROM {
        return items.iter().map(&f).collect();
    }
    let threads = cores();
    if threads < 2 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let mut chunks = items.chunks(chunk);
        let first = chunks.next().unwrap_or(&[]);
        let others: Vec<_> = chunks
            .map(|c| scope.spawn(move || c.iter().map(f).collect::<Vec<R>>()))
            .collect();
        let mut out: Vec<R> = first.iter().map(f).collect();
        for handle in others {
            match handle.join() {
                Ok(part) => out.extend(part),
                // A panic in `f` is a bug; carry it to the caller as it would have been there.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
}

/// Run `side` on a second thread while `main` runs on this one, when `apart` (the work is
/// large enough to pay for a thread), else `side` then `main` here (so `main` may wait for
/// something `side` sends). Returns `main`'s error if it fails, else `side`'s value.
pub(crate) fn beside<S: Send, E>(
    apart: bool,
    side: impl FnOnce() -> S + Send,
    main: impl FnOnce() -> Result<(), E>,
) -> Result<S, E> {
    if !apart || cores() < 2 {
        let value = side();
        main()?;
        return Ok(value);
    }
    std::thread::scope(|scope| {
        let handle = scope.spawn(side);
        let done = main();
        let value = match handle.join() {
            Ok(value) => value,
            // A panic in `side` is a bug; carry it to the caller as it would have been there.
            Err(panic) => std::panic::resume_unwind(panic),
        };
        done.map(|()| value)
    })
}

#[cfg(test)]
mod tests {
    use super::{beside, map};

    #[test]
    fn results_keep_the_items_order_small_and_large() {
        for n in [0, 1, 63, 64, 65, 1_000, 1_001] {
            let items: Vec<u64> = (0..n).collect();
            let out = map(&items, |x| x * 3);
            assert_eq!(
                out,
                items.iter().map(|x| x * 3).collect::<Vec<_>>(),
                "n = {n}"
            );
        }
    }

    #[test]
    fn errors_come_back_in_place() {
        let items: Vec<i32> = (0..200).collect();
        let out = map(&items, |x| if *x == 150 { Err(*x) } else { Ok(*x) });
        assert_eq!(out[150], Err(150));
        assert_eq!(out.iter().filter(|r| r.is_err()).count(), 1);
    }

    #[test]
    fn beside_returns_the_side_value_or_the_main_error_either_way() {
        for apart in [false, true] {
            let ok: Result<u32, &str> = beside(apart, || 7, || Ok(()));
            assert_eq!(ok, Ok(7), "apart = {apart}");
            let err: Result<u32, &str> = beside(apart, || 7, || Err("refused"));
            assert_eq!(err, Err("refused"), "apart = {apart}");
        }
    }

    #[test]
    fn main_can_wait_for_what_side_sends_either_way() {
        for apart in [false, true] {
            let (tx, rx) = std::sync::mpsc::channel();
            let got: Result<&str, String> = beside(
                apart,
                || {
                    tx.send(41).unwrap();
                    "side done"
                },
                || match rx.recv() {
                    Ok(41) => Ok(()),
                    other => Err(format!("main got {other:?}")),
                },
            );
            assert_eq!(got, Ok("side done"), "apart = {apart}");
        }
    }
}
