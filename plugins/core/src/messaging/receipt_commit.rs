//! The committer's side of a receipt publish: each id is checked (known, received by the
//! caller), and a status that moves forward (sent → delivered → read) becomes a status intent,
//! a summary change for the reader and a receipt event queued for the author under a fresh
//! queue id from the same generator as message ids, so the author's queue stays in one order.

use bytes::Bytes;

use super::batch::Batch;
use super::committer::{store_failure, Committer};
use super::receipts::ReceiptDraft;
use crate::accounts::AccountStatus;
use crate::outbox::{Channel, Outgoing};
use crate::ports::log::{Intent, Queued, SummaryChange};
use crate::records::chat::{
    direct_conversation, group_conversation, Message, ReceiptEvent, Status, StatusRecord,
};
use chatd_wire::reply::{ErrorCode, Failure};

impl Committer {
    /// Decides what each id of one receipt does and adds the writes to the unit being staged;
    /// returns the refused ids with why. Ids whose status would not move forward are accepted
    /// and change nothing.
    pub(super) fn stage_receipt(
        &mut self,
        batch: &mut Batch,
        by: &str,
        draft: &ReceiptDraft,
    ) -> Vec<(String, Failure)> {
        let mut refused = Vec::new();
        for id in &draft.ids {
            if let Err(failure) = self.stage_status(batch, by, id, draft.status) {
                refused.push((id.clone(), failure));
            }
        }
        refused
    }

    /// One id of a receipt: checks it, and when its status moves forward stores the new
    /// status, queues the event for the author and updates `by`'s unread count.
    fn stage_status(
        &mut self,
        batch: &mut Batch,
        by: &str,
        id: &str,
        status: Status,
    ) -> Result<(), Failure> {
        let Some(bytes) = self.log.message(id).map_err(store_failure)? else {
            return Err(Failure::new(ErrorCode::NotFound, "no such message"));
        };
        let message = Message::decode(&bytes).map_err(|e| {
            tracing::error!("message {id}: {e}");
            Failure::internal("the message could not be read")
        })?;
        let received = match &message.group {
            // Events are information, not messages: a receipt for one changes nothing.
            Some(_) if message.kind == "event" => return Ok(()),
            Some(group) => message.from != by && self.member_saw(batch, group, by, id)?,
            None => message.to.as_deref() == Some(by) && self.owns(by, id)?,
        };
        if !received {
            return Err(Failure::new(
                ErrorCode::Forbidden,
                "receipts are only accepted for messages you received",
            ));
        }
        let key = (id.to_string(), by.to_string());
        let current = match batch.statuses.get(&key) {
            Some(s) => *s,
            None => self.log.status(id, by).map_err(store_failure)?,
        };
        if status <= current {
            return Ok(());
        }
        let author = message.from.as_str();
        let unread = match &message.group {
            _ if status != Status::Read || author == by => None,
            // A group summary remembers how far the member has read; the unread count is
            // worked out from the history when asked.
            Some(group) => Some((
                group_conversation(group),
                group.as_str(),
                true,
                SummaryChange::ReadUpto(id.to_string()),
            )),
            None => Some((
                direct_conversation(author, by),
                author,
                false,
                SummaryChange::ReadOne,
            )),
        };
        let (qid, ts) = self.ids.next();
        let event = serde_json::to_vec(&ReceiptEvent {
            id: id.to_string(),
            by: by.to_string(),
            status,
            ts,
        })
        .map_err(|e| Failure::internal(format!("receipt not encoded: {e}")))?;

        batch.push(Intent::Status {
            id: id.to_string(),
            user: by.to_string(),
            record: StatusRecord { status, ts },
        });
        batch.statuses.insert(key, status);
        if let Some((conversation, peer, group, change)) = unread {
            batch.push(Intent::Summary {
                user: by.to_string(),
                conversation,
                peer: peer.to_string(),
                group,
                change,
            });
        }
        // The status is kept, but a removed author (or a later owner of the id) is not told.
        if !self.owns(author, id)? {
            return Ok(());
        }
        let event = Bytes::from(event);
        batch.push(Intent::Enqueue {
            user: author.to_string(),
            qid: qid.clone(),
            entry: Queued::Receipt(event.clone()),
        });
        batch.deliver(Outgoing {
            user: author.to_string(),
            channel: Channel::Receipt,
            payload: event,
            queue_id: Some(qid),
            skip_client: None,
        });
        batch.receipts += 1;
        Ok(())
    }

    /// Whether message `id` belongs to the current account `user`: the account is live and
    /// the message is newer than its history floor (a reclaimed id owns nothing older).
    fn owns(&self, user: &str, id: &str) -> Result<bool, Failure> {
        match self.accounts.status(user) {
            Ok(AccountStatus::Live { floor }) => Ok(floor.is_none_or(|f| id > f.as_str())),
            Ok(_) => Ok(false),
            Err(e) => {
                tracing::error!("account lookup failed: {e}");
                Err(Failure::internal(
                    "the account could not be looked up; retry",
                ))
            }
        }
    }

    /// Whether `user` was a member of `group` when message `id` was accepted (as this batch
    /// leaves the group).
    fn member_saw(
        &self,
        batch: &Batch,
        group: &str,
        user: &str,
        id: &str,
    ) -> Result<bool, Failure> {
        if let Some(g) = batch.groups.get(group) {
            return Ok(g.members.get(user).is_some_and(|m| m.saw(id)));
        }
        let record = self.log.membership(group, user).map_err(store_failure)?;
        Ok(record.is_some_and(|m| m.saw(id)))
    }
}
