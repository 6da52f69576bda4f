//! The IOPub publisher handle given to the backend: every message it sends carries the request
//! being handled as its parent, so frontends route output to the right cell. The handle is
//! cheap to clone and may be used from any thread; messages go, in order, through a channel to
//! the task that owns the PUB socket.

use std::sync::Arc;

use bytes::Bytes;
use jupyter_protocol::Header;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::wire::Message;

/// A MIME bundle (`{"text/plain": "...", "image/png": "<base64>"}`) or output metadata.
pub type MimeBundle = Map<String, Value>;

/// What the writer tasks receive: a message to send, or a request to confirm that all earlier
/// messages were handed to the socket.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Message(Box<Message>),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Publishes on IOPub with a fixed parent header. Clone it freely; it is `Send + Sync`.
/// Sending after the kernel has shut down is silently a no-op.
#[derive(Clone, Debug)]
pub struct Iopub {
    tx: mpsc::UnboundedSender<Outgoing>,
    session: Arc<str>,
    parent: Option<Arc<Header>>,
}

/// The receiving end of [`Iopub::capture`], for testing a backend without sockets.
#[derive(Debug)]
pub struct CapturedIopub {
    rx: mpsc::UnboundedReceiver<Outgoing>,
}

impl CapturedIopub {
    /// The next published message, if one is waiting.
    pub fn try_next(&mut self) -> Option<Message> {
        loop {
            match self.rx.try_recv().ok()? {
                Outgoing::Message(m) => return Some(*m),
                Outgoing::Flush(ack) => {
                    let _ = ack.send(());
                }
            }
        }
    }

    /// All messages published so far.
    pub fn drain(&mut self) -> Vec<Message> {
        std::iter::from_fn(|| self.try_next()).collect()
    }
}

impl Iopub {
    pub(crate) fn new(tx: mpsc::UnboundedSender<Outgoing>, session: Arc<str>) -> Self {
        Iopub {
            tx,
            session,
            parent: None,
        }
    }

    /// A handle whose messages are collected instead of sent (for backend unit tests).
    pub fn capture() -> (Iopub, CapturedIopub) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Iopub::new(tx, "capture".into()), CapturedIopub { rx })
    }

    /// The same publisher with another parent (the request that the messages answer).
    pub fn with_parent(&self, parent: Option<&Header>) -> Iopub {
        Iopub {
            tx: self.tx.clone(),
            session: self.session.clone(),
            parent: parent.map(|p| Arc::new(p.clone())),
        }
    }

    /// The parent header of the messages this handle sends.
    pub fn parent(&self) -> Option<&Header> {
        self.parent.as_deref()
    }

    /// Sends any IOPub message: `msg_type`, its content and message metadata.
    pub fn send(&self, msg_type: &str, content: Value, metadata: Value) {
        self.send_with_buffers(msg_type, content, metadata, Vec::new());
    }

    /// [`send`](Self::send) with binary buffers (comm messages may carry them).
    pub fn send_with_buffers(
        &self,
        msg_type: &str,
        content: Value,
        metadata: Value,
        buffers: Vec<Vec<u8>>,
    ) {
        let mut msg = Message::new(msg_type, content, self.parent.as_deref(), &self.session);
        msg.metadata = if metadata.is_null() {
            json!({})
        } else {
            metadata
        };
        msg.buffers = buffers.into_iter().map(Bytes::from).collect();
        // PUB topic, as ipykernel does it; subscribers ("") see every topic.
        msg.identities = vec![Bytes::from(format!("kernel.{}.{msg_type}", self.session))];
        let _ = self.tx.send(Outgoing::Message(Box::new(msg)));
    }

    /// `stream` output; `name` is `"stdout"` or `"stderr"`.
    pub fn stream(&self, name: &str, text: &str) {
        self.send("stream", json!({"name": name, "text": text}), json!({}));
    }

    /// `display_data`; with a `display_id` the output can later be replaced by
    /// [`update_display_data`](Self::update_display_data).
    pub fn display_data(&self, data: MimeBundle, metadata: MimeBundle, display_id: Option<&str>) {
        let mut content = json!({"data": data, "metadata": metadata, "transient": {}});
        if let Some(id) = display_id {
            content["transient"] = json!({"display_id": id});
        }
        self.send("display_data", content, json!({}));
    }

    /// `update_display_data`: replaces every output shown with `display_id`.
    pub fn update_display_data(&self, data: MimeBundle, metadata: MimeBundle, display_id: &str) {
        let content = json!({
            "data": data, "metadata": metadata, "transient": {"display_id": display_id},
        });
        self.send("update_display_data", content, json!({}));
    }

    /// `execute_result`: the cell's value, shown with `Out[execution_count]`.
    pub fn execute_result(&self, execution_count: usize, data: MimeBundle, metadata: MimeBundle) {
        let content = json!({
            "execution_count": execution_count, "data": data, "metadata": metadata,
        });
        self.send("execute_result", content, json!({}));
    }

    /// `error` output. The layer already publishes one for an `ExecuteOutcome::Error`; use this
    /// only for errors that are not the cell's result.
    pub fn error(&self, ename: &str, evalue: &str, traceback: &[String]) {
        let content = json!({"ename": ename, "evalue": evalue, "traceback": traceback});
        self.send("error", content, json!({}));
    }

    /// `clear_output`; with `wait`, the frontend clears when the next output arrives.
    pub fn clear_output(&self, wait: bool) {
        self.send("clear_output", json!({"wait": wait}), json!({}));
    }

    /// Opens a comm from the kernel side (e.g. a widget model: target `"jupyter.widget"`,
    /// metadata `{"version": "2.1.0"}`).
    pub fn comm_open(
        &self,
        comm_id: &str,
        target_name: &str,
        data: Value,
        metadata: Value,
        buffers: Vec<Vec<u8>>,
    ) {
        let content = json!({"comm_id": comm_id, "target_name": target_name, "data": data});
        self.send_with_buffers("comm_open", content, metadata, buffers);
    }

    /// A message on an open comm.
    pub fn comm_msg(&self, comm_id: &str, data: Value, metadata: Value, buffers: Vec<Vec<u8>>) {
        let content = json!({"comm_id": comm_id, "data": data});
        self.send_with_buffers("comm_msg", content, metadata, buffers);
    }

    /// Closes a comm.
    pub fn comm_close(&self, comm_id: &str, data: Value) {
        self.send(
            "comm_close",
            json!({"comm_id": comm_id, "data": data}),
            json!({}),
        );
    }

    /// `status` (`busy` / `idle` / `starting`): only the layer sends these.
    pub(crate) fn status(&self, state: &str) {
        self.send("status", json!({"execution_state": state}), json!({}));
    }

    /// Resolves once every message sent before this call was handed to the socket.
    pub(crate) fn flush(&self) -> tokio::sync::oneshot::Receiver<()> {
        let (ack, done) = tokio::sync::oneshot::channel();
        let _ = self.tx.send(Outgoing::Flush(ack));
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jupyter::wire::new_header;

    #[test]
    fn handle_is_send_sync_and_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<Iopub>();
    }

    #[test]
    fn messages_carry_the_parent_and_session() {
        let (iopub, mut captured) = Iopub::capture();
        let parent = new_header("execute_request", "client");
        let iopub = iopub.with_parent(Some(&parent));
        let from_thread = iopub.clone();
        std::thread::spawn(move || from_thread.stream("stdout", "hi\n"))
            .join()
            .unwrap();
        let mut data = MimeBundle::new();
        data.insert("text/plain".into(), json!("2"));
        iopub.display_data(data.clone(), MimeBundle::new(), Some("d1"));
        iopub.execute_result(3, data, MimeBundle::new());
        iopub.comm_msg(
            "c1",
            json!({"method": "update"}),
            json!({"version": "2.1.0"}),
            vec![b"x".to_vec()],
        );

        let msgs = captured.drain();
        let types: Vec<_> = msgs.iter().map(|m| m.msg_type().to_string()).collect();
        assert_eq!(
            types,
            ["stream", "display_data", "execute_result", "comm_msg"]
        );
        for m in &msgs {
            assert_eq!(m.parent_header.as_ref().unwrap().msg_id, parent.msg_id);
            assert_eq!(m.header.session, "capture");
        }
        assert_eq!(msgs[0].content, json!({"name": "stdout", "text": "hi\n"}));
        assert_eq!(msgs[1].content["transient"]["display_id"], "d1");
        assert_eq!(msgs[2].content["execution_count"], 3);
        assert_eq!(msgs[3].metadata["version"], "2.1.0");
        assert_eq!(msgs[3].buffers, vec![Bytes::from_static(b"x")]);
    }
}
