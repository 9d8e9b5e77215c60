//! Coalescing writes to containerd's socket.
//!
//! h2 writes each DATA frame (16 KiB, containerd's frame size) with its own `writev` and
//! flushes after every frame, so relaying a blob costs containerd a wake-up per 16 KiB. This
//! writer buffers what h2 writes during one poll of the connection and writes it at once: a
//! flush that follows writes is deferred to the connection's next poll (the task is woken for
//! it), and the flush that finds nothing new written since the last one writes the buffer.
//!
//! This relies on h2 flushing its codec at the end of every turn that does not finish the
//! connection (`Streams::poll_complete`), and shutting it down otherwise; recheck when h2 is
//! upgraded. The transfer front's tests hang if a flush is ever lost.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Buffered bytes written at once whatever the flushes say.
const HIGH_WATER: usize = 256 << 10;

/// A stream whose writes are coalesced (see the module docs).
#[derive(Debug)]
pub struct Coalesced<S> {
    inner: S,
    buffer: Vec<u8>,
    /// Written since the buffer was written out.
    written: usize,
    /// Bytes were buffered since the last flush.
    fresh: bool,
}

impl<S> Coalesced<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Coalesced {
            inner,
            buffer: Vec::with_capacity(HIGH_WATER),
            written: 0,
            fresh: false,
        }
    }
}

impl<S: AsyncWrite + Unpin> Coalesced<S> {
    /// Writes the whole buffer out.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buffer.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buffer[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buffer.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesced<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesced<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.buffer.len() >= HIGH_WATER {
            ready!(this.poll_drain(cx))?;
        }
        let mut taken = 0;
        for buf in bufs {
            this.buffer.extend_from_slice(buf);
            taken += buf.len();
        }
        this.fresh |= taken > 0;
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.fresh && this.buffer.len() < HIGH_WATER {
            // More may follow in this poll of the connection: write on the next flush.
            this.fresh = false;
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(()));
        }
        this.fresh = false;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    use tokio::io::AsyncReadExt;

    use super::*;

    /// Counts wake-ups.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn ready<T>(poll: Poll<io::Result<T>>) -> T {
        match poll {
            Poll::Ready(result) => result.unwrap(),
            Poll::Pending => panic!("unexpectedly pending"),
        }
    }

    #[tokio::test]
    async fn writes_wait_for_the_flush_that_follows_no_writes() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut writer = Coalesced::new(near);
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut writer = Pin::new(&mut writer);

        ready(writer.as_mut().poll_write(&mut cx, b"frame one, "));
        ready(writer.as_mut().poll_write_vectored(
            &mut cx,
            &[io::IoSlice::new(b"frame "), io::IoSlice::new(b"two")],
        ));
        // The flush right after writes is deferred, and the task woken to flush again.
        ready(writer.as_mut().poll_flush(&mut cx));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        let mut probe = [0; 1];
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), far.read(&mut probe))
                .await
                .is_err(),
            "nothing is written before the second flush"
        );
        ready(writer.as_mut().poll_flush(&mut cx));
        let mut got = vec![0; 20];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"frame one, frame two");
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            1,
            "a real flush wakes nobody"
        );
    }

    #[tokio::test]
    async fn a_full_buffer_and_shutdown_write_without_waiting() {
        let (near, mut far) = tokio::io::duplex(4 << 20);
        let mut writer = Coalesced::new(near);
        let waker = Waker::from(Arc::new(Wakes::default()));
        let mut cx = Context::from_waker(&waker);
        let mut writer = Pin::new(&mut writer);

        let frame = vec![7u8; 16 << 10];
        let frames = HIGH_WATER / frame.len() + 1;
        for _ in 0..frames {
            ready(writer.as_mut().poll_write(&mut cx, &frame));
        }
        // The buffer reached the high-water mark and was written on the next write, unflushed.
        let mut got = vec![0; HIGH_WATER];
        far.read_exact(&mut got).await.unwrap();
        assert!(got.iter().all(|b| *b == 7));

        ready(writer.as_mut().poll_write(&mut cx, b"last"));
        ready(writer.as_mut().poll_shutdown(&mut cx));
        let mut rest = Vec::new();
        far.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest.len(), frame.len() + 4);
        assert!(rest.ends_with(b"last"));
    }
}
