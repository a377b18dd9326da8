//! One byte-stream interface over TCP, TLS and WebSocket connections, so the session layer is
//! written once. MQTT over WebSocket carries the same bytes in binary messages.
//!
//! Byte streams are read through a per-thread scratch buffer and only what arrived is copied
//! into the session's buffer, so a session waiting for its next packet holds no read buffer.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::quick_ack::QuickAck;

/// A client connection as the session sees it.
pub trait Transport: Send + 'static {
    /// Appends what arrives to `buf`, growing it only by what arrived; 0 means the peer
    /// closed. Must be cancel-safe.
    fn read_into<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a;
    /// Writes all of `data` and flushes.
    fn write_all_flush<'a>(
        &'a mut self,
        data: &'a [u8],
    ) -> impl Future<Output = io::Result<()>> + Send + 'a;
    /// Closes the connection politely (best effort).
    fn close(&mut self) -> impl Future<Output = ()> + Send + '_;
    /// Has the kernel acknowledge what was read at once (see `quick_ack.rs`).
    fn acknowledge_read(&self);
}

/// A plain byte stream: TCP or TLS over TCP, and the TCP socket beneath it.
pub struct Stream<S>(pub S, pub QuickAck);

impl<S> Transport for Stream<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn read_into<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        std::future::poll_fn(move |cx| poll_read_append(Pin::new(&mut self.0), cx, buf))
    }

    async fn write_all_flush(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.write_all(data).await?;
        self.0.flush().await
    }

    async fn close(&mut self) {
        let _ = self.0.shutdown().await;
    }

    fn acknowledge_read(&self) {
        self.1.now();
    }
}

/// Size of each thread's scratch buffer: the most one read takes from a byte stream.
const SCRATCH_BYTES: usize = 16 * 1024;

/// Spare room in the session's buffer worth reading into directly (a large packet under way).
const DIRECT_READ_MIN: usize = 4 * 1024;

thread_local! {
    /// Where byte streams are read before what arrived is copied to the session's buffer. Never
    /// held across a `Pending`: every read either copies its bytes out in the same poll or
    /// read nothing.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_BYTES].into_boxed_slice());
}

/// Reads once from `stream` and appends what arrived to `buf`. Cancel-safe: `Pending` means
/// nothing was read.
fn poll_read_append<S: AsyncRead>(
    stream: Pin<&mut S>,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() >= DIRECT_READ_MIN {
        return tokio_util::io::poll_read_buf(stream, cx, buf);
    }
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => {
            let mut read = ReadBuf::new(&mut scratch[..]);
            match stream.poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    buf.extend_from_slice(read.filled());
                    Poll::Ready(Ok(read.filled().len()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        }
        // Only a read nested inside another read on this thread gets here: no shared scratch.
        Err(_) => {
            buf.reserve(DIRECT_READ_MIN);
            tokio_util::io::poll_read_buf(stream, cx, buf)
        }
    })
}

/// MQTT carried in WebSocket binary messages, and the TCP socket beneath them.
pub struct WsStream<S>(pub WebSocketStream<S>, pub QuickAck);

impl<S> Transport for WsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            match self.0.next().await {
                None => return Ok(0),
                Some(Err(e)) => return Err(io::Error::other(e)),
                Some(Ok(Message::Binary(data))) => {
                    if data.is_empty() {
                        continue;
                    }
                    buf.extend_from_slice(&data);
                    return Ok(data.len());
                }
                Some(Ok(Message::Close(_))) => return Ok(0),
                Some(Ok(Message::Text(_))) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "MQTT over WebSocket needs binary messages",
                    ))
                }
                // Pings are answered by tungstenite itself.
                Some(Ok(_)) => continue,
            }
        }
    }

    async fn write_all_flush(&mut self, data: &[u8]) -> io::Result<()> {
        self.0
            .send(Message::Binary(data.to_vec()))
            .await
            .map_err(io::Error::other)
    }

    async fn close(&mut self) {
        let _ = self.0.close(None).await;
    }

    fn acknowledge_read(&self) {
        self.1.now();
    }
}
