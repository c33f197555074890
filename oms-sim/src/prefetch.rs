//! Reading the next piece of the stored world while the check works on the one before.
//!
//! The end-of-run check reads every order and every event back from the store (statements
//! and document decoding) and then hashes and checks them (pure work). Done one after the
//! other, one of the machine's cores waits while the other works; here a second thread reads
//! ahead by one piece, so the check costs about the longer of the two, not their sum. The
//! pieces are still consumed one at a time, in the order read, so the digest is the same.

use std::sync::mpsc::sync_channel;

use oms_core::error::OmsResult;

/// Call `consume` with every piece `produce` returns until it returns `None`, `produce`
/// running one piece ahead on a second thread. Stops at the first error of either side (the
/// producer's error is returned where its piece would have been consumed).
pub(crate) fn read_ahead<P: Send>(
    mut produce: impl FnMut() -> OmsResult<Option<P>> + Send,
    mut consume: impl FnMut(P) -> OmsResult<()>,
) -> OmsResult<()> {
    std::thread::scope(|scope| {
        // One piece in the channel and one being read: memory stays at a few pieces.
        let (tx, rx) = sync_channel::<OmsResult<P>>(1);
        scope.spawn(move || loop {
            let next = match produce() {
                Ok(Some(piece)) => Ok(piece),
                Ok(None) => return,
                Err(e) => Err(e),
            };
            let failed = next.is_err();
            // A send fails only when the consumer stopped; either way there is no more to do.
            if tx.send(next).is_err() || failed {
                return;
            }
        });
        // Leaving early drops the receiver, which stops the producer at its next send.
        for piece in rx {
            consume(piece?)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::read_ahead;
    use oms_core::error::OmsError;

    fn counter(up_to: u32, fail_at: Option<u32>) -> impl FnMut() -> Result<Option<u32>, OmsError> {
        let mut n = 0;
        move || {
            n += 1;
            if Some(n) == fail_at {
                return Err(OmsError::Storage {
                    reason: format!("read {n} failed"),
                });
            }
            Ok((n <= up_to).then_some(n))
        }
    }

    #[test]
    fn every_piece_arrives_once_in_order() {
        for up_to in [0, 1, 2, 50] {
            let mut seen = Vec::new();
            read_ahead(counter(up_to, None), |n| {
                seen.push(n);
                Ok(())
            })
            .unwrap();
            assert_eq!(seen, (1..=up_to).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_read_error_comes_back_after_the_pieces_before_it() {
        let mut seen = Vec::new();
        let err = read_ahead(counter(10, Some(4)), |n| {
            seen.push(n);
            Ok(())
        })
        .unwrap_err();
        assert_eq!(seen, vec![1, 2, 3]);
        assert!(err.to_string().contains("read 4 failed"), "{err}");
    }

    #[test]
    fn a_consumer_error_stops_the_reading() {
        let mut seen = Vec::new();
        let err = read_ahead(counter(u32::MAX, None), |n| {
            seen.push(n);
            if n == 3 {
                return Err(OmsError::invalid("piece", "refused"));
            }
            Ok(())
        })
        .unwrap_err();
        assert_eq!(seen, vec![1, 2, 3]);
        assert!(err.to_string().contains("refused"), "{err}");
    }
}
