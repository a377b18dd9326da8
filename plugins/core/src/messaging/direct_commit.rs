//! The committer's side of a send: a repeated cid gets its first ack back, a group message
//! goes to `group_commit.rs`, and a 1:1 message is stored once, indexed in the conversation's
//! history, queued for the recipient and counted unread in their summary.

use bytes::Bytes;

use super::batch::{Batch, Staged};
use super::committer::{store_failure, Committer};
use super::rpc::account_failure;
use super::validate::{Draft, Target};
use crate::outbox::{Channel, Outgoing};
use crate::ports::log::{Intent, Queued, SummaryChange};
use crate::records::chat::{direct_conversation, Message};
use chatd_wire::reply::{self, ErrorCode, Failure};

/// A new message as stored and delivered: its id, its payload and the sender's ack.
pub(super) type NewMessage = (String, Bytes, Bytes);

impl Committer {
    /// Takes the next id for a message of `from` made from `draft`; `address` sets where it
    /// goes (`to` or `group`).
    pub(super) fn new_message(
        &mut self,
        from: &str,
        draft: &Draft,
        address: impl FnOnce(&mut Message),
    ) -> Result<NewMessage, Failure> {
        let (id, ts) = self.ids.next();
        let mut message = Message::new(id.clone(), &draft.kind, ts);
        message.from = from.to_string();
        address(&mut message);
        message.text = draft.text.clone();
        message.media = draft.media.clone();
        message.reply_to = draft.reply_to.clone();
        let payload = Bytes::from(
            serde_json::to_vec(&message)
                .map_err(|e| Failure::internal(format!("message not encoded: {e}")))?,
        );
        let ack = reply::ack_ok(&draft.cid, &id, ts);
        Ok((id, payload, ack))
    }

    /// Decides what one send does and adds its writes to the unit being staged.
    pub(super) fn stage(
        &mut self,
        batch: &mut Batch,
        from: &str,
        device: Option<&str>,
        draft: &Draft,
    ) -> Result<Staged, Failure> {
        let cid = (from.to_string(), draft.cid.clone());
        match batch.acks.get(&cid) {
            Some(Staged::New { unit, ack } | Staged::Again { unit, ack }) => {
                return Ok(Staged::Again {
                    unit: *unit,
                    ack: ack.clone(),
                })
            }
            Some(Staged::Duplicate(ack)) => return Ok(Staged::Duplicate(ack.clone())),
            None => {}
        }
        // The cid is not looked up first: the unit claims it, and the log skips the whole
        // unit when it is remembered already (`UnitOutcome::Duplicate`, answered with the
        // first ack). A lookup here would be a second read of the store for every message,
        // to save work only for the rare repeated send.
        let staged = match &draft.target {
            Target::User(to) => self.stage_direct(batch, from, to, draft),
            Target::Group(group) => self.stage_group_send(batch, from, device, group, draft),
        };
        let staged = match staged {
            Ok(staged) => staged,
            Err(failure) => {
                // A repeated send is answered as the first one was, even when it would be
                // refused now (the recipient was removed, the sender left the group).
                return match self
                    .log
                    .remembered_ack(from, &draft.cid)
                    .map_err(store_failure)?
                {
                    Some(ack) => {
                        batch.acks.insert(cid, Staged::Duplicate(ack.clone()));
                        Ok(Staged::Duplicate(ack))
                    }
                    None => Err(failure),
                };
            }
        };
        let unit = batch.unit();
        batch.acks.insert(
            cid,
            Staged::New {
                unit,
                ack: staged.clone(),
            },
        );
        Ok(Staged::New { unit, ack: staged })
    }

    /// A 1:1 message; returns its ack.
    fn stage_direct(
        &mut self,
        batch: &mut Batch,
        from: &str,
        to: &str,
        draft: &Draft,
    ) -> Result<Bytes, Failure> {
        let exists = match self.recipients.get(to) {
            Some(known) => *known,
            None => self
                .accounts
                .exists(to)
                .map_err(|e| account_failure("the recipient's account", e))?,
        };
        if !exists {
            return Err(Failure::new(
                ErrorCode::NotFound,
                format!("no such user `{to}`"),
            ));
        }
        let conversation = direct_conversation(from, to);
        let (id, payload, ack) = self.new_message(from, draft, |m| m.to = Some(to.to_string()))?;

        batch.store_message(&id, &payload, &conversation, None);
        batch.push(Intent::Enqueue {
            user: to.to_string(),
            qid: id.clone(),
            entry: Queued::Message,
        });
        if let Some(media) = &draft.media {
            for user in [from, to] {
                batch.push(Intent::MediaRight {
                    media: media.clone(),
                    user: user.to_string(),
                });
            }
        }
        if self.push_jobs && to != from && !self.deliver.is_online(to) {
            batch.push(Intent::PushJob {
                user: to.to_string(),
                conversation: conversation.clone(),
                id: id.clone(),
                queued: None,
            });
        }
        let summary = |user: &str, peer: &str, change: SummaryChange| Intent::Summary {
            user: user.to_string(),
            conversation: conversation.clone(),
            peer: peer.to_string(),
            group: false,
            change,
        };
        batch.push(summary(from, to, SummaryChange::Last(id.clone())));
        if to != from {
            // A note to oneself has one summary, and nothing unread in it.
            batch.push(summary(to, from, SummaryChange::Received(id.clone())));
        }
        batch.deliver(Outgoing {
            user: to.to_string(),
            channel: Channel::Inbox,
            payload,
            queue_id: Some(id),
            skip_client: None,
        });
        batch.messages += 1;
        Ok(ack)
    }
}
