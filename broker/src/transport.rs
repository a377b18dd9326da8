//! One byte-stream interface over TCP, TLS and WebSocket connections, so the session layer is
//! written once. MQTT over WebSocket carries the same bytes in binary messages.

use std::future::Future;
use std::io;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A client connection as the session sees it.
pub trait Transport: Send + 'static {
    /// Appends what arrives to `buf`; 0 means the peer closed. Must be cancel-safe.
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
}

/// A plain byte stream: TCP or TLS over TCP.
pub struct Stream<S>(pub S);

impl<S> Transport for Stream<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn read_into<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        buf.reserve(4096);
        self.0.read_buf(buf)
    }

    async fn write_all_flush(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.write_all(data).await?;
        self.0.flush().await
    }

    async fn close(&mut self) {
        let _ = self.0.shutdown().await;
    }
}

/// MQTT carried in WebSocket binary messages.
pub struct WsStream<S>(pub WebSocketStream<S>);

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
}
