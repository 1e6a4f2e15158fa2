//! A response or request body fed chunk by chunk from a channel, shared by the integration tests.

use hyper::body::{Bytes, Frame};
use tokio::sync::mpsc;

pub type Chunk = Result<Frame<Bytes>, std::io::Error>;

pub struct BodyRx(pub mpsc::Receiver<Chunk>);

impl futures_core::Stream for BodyRx {
    type Item = Chunk;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Chunk>> {
        self.0.poll_recv(cx)
    }
}

pub type ChannelBody = http_body_util::StreamBody<BodyRx>;

/// A body and the sender that feeds it; dropping the sender ends the body.
pub fn channel_body() -> (mpsc::Sender<Chunk>, ChannelBody) {
    let (tx, rx) = mpsc::channel(16);
    (tx, http_body_util::StreamBody::new(BodyRx(rx)))
}
