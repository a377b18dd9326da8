//! The committer's group work: membership changes (with their events) and group messages.
//!
//! Both run on the committer thread, so a send and a removal are totally ordered: a message
//! accepted before the removal reaches the removed member, one accepted after does not. A
//! group message is stored once (the message and its history entry) and then only a queue
//! entry per recipient is written — no per-member copy and no per-member summary — which
//! keeps a 1024-member fan-out to about one small write per member. Those queue entries are
//! written in slices by later batches too (see `fanout.rs`), so other traffic never waits for
//! a whole group.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};

use super::batch::Batch;
use super::committer::{store_failure, Committer};
use super::group_ops::{too_many, too_many_named, GroupOp};
use super::rpc::account_failure;
use super::validate::Draft;
use crate::outbox::{Channel, Outgoing};
use crate::ports::log::{Intent, SummaryChange};
use crate::records::chat::{group_conversation, Message};
use crate::records::fanout::FanoutRecord;
use crate::records::group::{Group, GroupIndex, GroupRecord, MemberRecord, Role};
use chatd_wire::reply::{ErrorCode, Failure};

impl Committer {
    /// The group as this batch leaves it (read from the log the first time). Closed and
    /// unknown groups are `not_found`.
    fn group(&self, batch: &Batch, id: &str) -> Result<Arc<Group>, Failure> {
        let group = match batch.groups.get(id) {
            Some(g) => g.clone(),
            None => self
                .log
                .group(id)
                .map_err(store_failure)?
                .ok_or_else(|| no_such_group(id))?,
        };
        if group.record.closed {
            return Err(no_such_group(id));
        }
        Ok(group)
    }

    /// A group message: refused unless `from` is a member now; else stored once, queued for
    /// every other member, and shown live to the sender's other devices.
    pub(super) fn stage_group_send(
        &mut self,
        batch: &mut Batch,
        from: &str,
        device: Option<&str>,
        group_id: &str,
        draft: &Draft,
    ) -> Result<Bytes, Failure> {
        let group = self.group(batch, group_id)?;
        if group.role_of(from).is_none() {
            return Err(Failure::new(
                ErrorCode::Forbidden,
                format!("you are not a member of group `{group_id}`"),
            ));
        }
        let recipients: Vec<String> = group
            .active()
            .map(|(u, _)| u.clone())
            .filter(|u| u != from)
            .collect();
        let (id, payload, ack) =
            self.new_message(from, draft, |m| m.group = Some(group_id.to_string()))?;
        let conversation = group_conversation(group_id);
        let index = GroupIndex {
            from: from.to_string(),
            recipients: recipients.len() as u32,
        };

        batch.store_message(&id, &payload, &conversation, Some(index));
        if let Some(media) = &draft.media {
            batch.push(Intent::MediaRight {
                media: media.clone(),
                user: from.to_string(),
            });
        }
        // The sender's other devices see what this one sent; not queued (history has it).
        batch.deliver(Outgoing {
            user: from.to_string(),
            channel: Channel::Inbox,
            payload: payload.clone(),
            queue_id: None,
            skip_client: device.map(str::to_string),
        });
        // The members' queue entries follow in slices (this batch's and later ones).
        let record = FanoutRecord {
            conversation,
            media: draft.media.clone(),
            push: true,
            recipients,
            done: 0,
        };
        self.start_fanout(batch, &id, payload, record);
        batch.messages += 1;
        Ok(ack)
    }

    /// Applies one group change and returns the request's result.
    pub(super) fn stage_group(
        &mut self,
        batch: &mut Batch,
        by: &str,
        op: GroupOp,
    ) -> Result<Value, Failure> {
        if let GroupOp::Create { name, members } = op {
            return self.create_group(batch, by, name, members);
        }
        let group_id = match &op {
            GroupOp::Add { group, .. }
            | GroupOp::Remove { group, .. }
            | GroupOp::Promote { group, .. }
            | GroupOp::Demote { group, .. }
            | GroupOp::Leave { group }
            | GroupOp::Rename { group, .. } => group.clone(),
            GroupOp::Create { .. } => return Err(Failure::internal("unreachable")),
        };
        let mut group = self.group(batch, &group_id)?;
        self.change_group(batch, by, Arc::make_mut(&mut group), op)?;
        batch.groups.insert(group_id, group);
        Ok(json!({}))
    }

    fn create_group(
        &mut self,
        batch: &mut Batch,
        by: &str,
        name: String,
        members: Vec<String>,
    ) -> Result<Value, Failure> {
        if members.len() + 1 > self.max_members {
            return Err(too_many(members.len() + 1, self.max_members));
        }
        self.require_accounts(&members)?;
        let mut everyone = vec![by.to_string()];
        everyone.extend(members.iter().cloned());
        self.require_room(batch, by, &everyone)?;
        let (eid, ts) = self.ids.next();
        let group_id = format!("g_{}", eid.replace('-', ""));
        let mut group = Group {
            id: group_id.clone(),
            record: GroupRecord {
                name: name.clone(),
                creator: by.to_string(),
                created: ts,
                closed: false,
            },
            members: Default::default(),
        };
        join(&mut group, by, Role::Admin, &eid);
        for user in &members {
            join(&mut group, user, Role::Member, &eid);
        }
        Committer::staged_joins(batch, &everyone);
        self.write_group(batch, &group, &everyone, true);
        self.join_summaries(batch, &group_id, &everyone, &eid);
        let mut event = Message::new(eid.clone(), "event", ts);
        event.event = Some("member_added".into());
        event.by = Some(by.to_string());
        event.users = Some(members);
        event.name = Some(name);
        self.emit(batch, &group, event, &[]);
        batch.groups.insert(group_id.clone(), Arc::new(group));
        Ok(json!({ "group": group_id }))
    }

    /// Every change except creation; checks everything before touching the group, so a
    /// refused request changes nothing.
    fn change_group(
        &mut self,
        batch: &mut Batch,
        by: &str,
        group: &mut Group,
        op: GroupOp,
    ) -> Result<(), Failure> {
        let role = group.role_of(by).ok_or_else(|| {
            Failure::new(
                ErrorCode::Forbidden,
                format!("you are not a member of group `{}`", group.id),
            )
        })?;
        let admin_only = |what: &str| {
            if role == Role::Admin {
                Ok(())
            } else {
                Err(Failure::new(
                    ErrorCode::Forbidden,
                    format!("only admins may {what}"),
                ))
            }
        };
        match op {
            GroupOp::Create { .. } => Err(Failure::internal("unreachable")),
            GroupOp::Add { users, .. } => {
                admin_only("add members")?;
                let new: Vec<String> = users
                    .into_iter()
                    .filter(|u| group.role_of(u).is_none())
                    .collect();
                if new.is_empty() {
                    return Ok(());
                }
                let size = group.size() + new.len();
                if size > self.max_members {
                    return Err(too_many(size, self.max_members));
                }
                self.require_accounts(&new)?;
                self.require_room(batch, by, &new)?;
                let (eid, ts) = self.ids.next();
                for user in &new {
                    join(group, user, Role::Member, &eid);
                }
                Committer::staged_joins(batch, &new);
                self.write_group(batch, group, &new, false);
                self.join_summaries(batch, &group.id, &new, &eid);
                self.emit_event(batch, group, (eid, ts), "member_added", by, new, &[]);
                Ok(())
            }
            GroupOp::Remove { users, .. } => {
                admin_only("remove members")?;
                self.at_most_members(&users)?;
                require_members(group, &users)?;
                let (eid, ts) = self.ids.next();
                for user in &users {
                    leave(group, user, &eid);
                }
                Committer::staged_leaves(batch, &users);
                self.write_group(batch, group, &users, false);
                let gone = users.clone();
                self.emit_event(batch, group, (eid, ts), "member_removed", by, users, &gone);
                self.after_departure(batch, group, by);
                Ok(())
            }
            GroupOp::Leave { .. } => {
                let (eid, ts) = self.ids.next();
                leave(group, by, &eid);
                let me = vec![by.to_string()];
                Committer::staged_leaves(batch, &me);
                self.write_group(batch, group, &me, false);
                self.emit_event(batch, group, (eid, ts), "member_left", by, me.clone(), &me);
                self.after_departure(batch, group, by);
                Ok(())
            }
            GroupOp::Promote { users, .. } => {
                admin_only("promote members")?;
                self.at_most_members(&users)?;
                require_members(group, &users)?;
                let changed = set_role(group, &users, Role::Admin);
                if !changed.is_empty() {
                    self.write_group(batch, group, &changed, false);
                    let eid = self.ids.next();
                    self.emit_event(batch, group, eid, "promoted", by, changed, &[]);
                }
                Ok(())
            }
            GroupOp::Demote { users, .. } => {
                admin_only("demote admins")?;
                self.at_most_members(&users)?;
                require_members(group, &users)?;
                let admins_left = group
                    .active()
                    .filter(|(u, m)| m.role == Role::Admin && !users.contains(u))
                    .count();
                if admins_left == 0 {
                    return Err(Failure::bad(
                        "a group needs at least one admin: promote someone else first",
                    ));
                }
                let changed = set_role(group, &users, Role::Member);
                if !changed.is_empty() {
                    self.write_group(batch, group, &changed, false);
                    let eid = self.ids.next();
                    self.emit_event(batch, group, eid, "demoted", by, changed, &[]);
                }
                Ok(())
            }
            GroupOp::Rename { name, .. } => {
                admin_only("rename the group")?;
                group.record.name = name.clone();
                self.write_group(batch, group, &[], true);
                let (eid, ts) = self.ids.next();
                let mut event = Message::new(eid, "event", ts);
                event.event = Some("renamed".into());
                event.by = Some(by.to_string());
                event.name = Some(name);
                self.emit(batch, group, event, &[]);
                Ok(())
            }
        }
    }

    /// After members went: an empty group is closed; a group left without an admin gets its
    /// longest-standing member promoted.
    fn after_departure(&mut self, batch: &mut Batch, group: &mut Group, by: &str) {
        if group.size() == 0 {
            group.record.closed = true;
            self.write_group(batch, group, &[], true);
            return;
        }
        if group.has_admin() {
            return;
        }
        if let Some(next) = group.longest_standing() {
            let changed = set_role(group, std::slice::from_ref(&next), Role::Admin);
            self.write_group(batch, group, &changed, false);
            let eid = self.ids.next();
            self.emit_event(batch, group, eid, "promoted", by, changed, &[]);
        }
    }

    /// Refuses a list (without repeats) naming more users than a group can have.
    fn at_most_members(&self, users: &[String]) -> Result<(), Failure> {
        if users.len() > self.max_members {
            return Err(too_many_named(users.len(), self.max_members));
        }
        Ok(())
    }

    /// Refuses the request unless every user has an account.
    fn require_accounts(&self, users: &[String]) -> Result<(), Failure> {
        let mut unknown = Vec::new();
        for user in users {
            let exists = self
                .accounts
                .exists(user)
                .map_err(|e| account_failure("the users' accounts", e))?;
            if !exists {
                unknown.push(user.as_str());
            }
        }
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(Failure::new(
                ErrorCode::NotFound,
                format!("no such users: {}", unknown.join(", ")),
            ))
        }
    }

    /// Writes the group record (when `record`) and the membership records of `users`.
    fn write_group(&self, batch: &mut Batch, group: &Group, users: &[String], record: bool) {
        if record {
            batch.push(Intent::Group {
                group: group.id.clone(),
                record: group.record.clone(),
            });
        }
        for user in users {
            if let Some(member) = group.members.get(user) {
                batch.push(Intent::Member {
                    group: group.id.clone(),
                    user: user.clone(),
                    record: member.clone(),
                });
            }
        }
    }

    /// Gives new members their summary of the group (everything before joining counts as
    /// read). Someone added back keeps the summary of their earlier membership: what they
    /// received then and never marked read stays unread.
    fn join_summaries(&self, batch: &mut Batch, group: &str, users: &[String], joined: &str) {
        for user in users {
            batch.push(Intent::Summary {
                user: user.clone(),
                conversation: group_conversation(group),
                peer: group.to_string(),
                group: true,
                change: SummaryChange::Joined(joined.to_string()),
            });
        }
    }

    /// A membership event about `users` with id `eid`, to every member and to `also`.
    #[allow(clippy::too_many_arguments)]
    fn emit_event(
        &mut self,
        batch: &mut Batch,
        group: &Group,
        (eid, ts): (String, u64),
        kind: &str,
        by: &str,
        users: Vec<String>,
        also: &[String],
    ) {
        let mut event = Message::new(eid, "event", ts);
        event.event = Some(kind.to_string());
        event.by = Some(by.to_string());
        event.users = Some(users);
        self.emit(batch, group, event, also);
    }

    /// Stores a group event like a message (history and queues) and hands it out.
    fn emit(&mut self, batch: &mut Batch, group: &Group, mut event: Message, also: &[String]) {
        event.group = Some(group.id.clone());
        let id = event.id.clone();
        let payload = match serde_json::to_vec(&event) {
            Ok(v) => Bytes::from(v),
            Err(e) => {
                tracing::error!("group event not encoded: {e}");
                return;
            }
        };
        let conversation = group_conversation(&group.id);
        batch.store_message(&id, &payload, &conversation, Some(GroupIndex::default()));
        let mut recipients: Vec<String> = group.active().map(|(u, _)| u.clone()).collect();
        recipients.extend(also.iter().filter(|u| group.role_of(u).is_none()).cloned());
        let record = FanoutRecord {
            conversation,
            media: None,
            push: false,
            recipients,
            done: 0,
        };
        self.start_fanout(batch, &id, payload, record);
        batch.messages += 1;
    }
}

fn no_such_group(id: &str) -> Failure {
    Failure::new(ErrorCode::NotFound, format!("no such group `{id}`"))
}

/// Refuses unless every user is a current member.
fn require_members(group: &Group, users: &[String]) -> Result<(), Failure> {
    let strangers: Vec<&str> = users
        .iter()
        .filter(|u| group.role_of(u).is_none())
        .map(String::as_str)
        .collect();
    if strangers.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            ErrorCode::NotFound,
            format!("not members of the group: {}", strangers.join(", ")),
        ))
    }
}

/// Opens a membership window for `user` at event `eid`.
fn join(group: &mut Group, user: &str, role: Role, eid: &str) {
    let record = group
        .members
        .entry(user.to_string())
        .or_insert_with(|| MemberRecord {
            role,
            windows: Vec::new(),
        });
    record.role = role;
    record.windows.push((eid.to_string(), None));
}

/// Closes the open membership window of `user` at event `eid` (inclusive).
fn leave(group: &mut Group, user: &str, eid: &str) {
    if let Some(record) = group.members.get_mut(user) {
        if let Some(last) = record.windows.last_mut() {
            if last.1.is_none() {
                last.1 = Some(eid.to_string());
            }
        }
    }
}

/// Sets the role of those of `users` whose role differs; returns who changed.
fn set_role(group: &mut Group, users: &[String], role: Role) -> Vec<String> {
    let mut changed = Vec::new();
    for user in users {
        if let Some(record) = group.members.get_mut(user) {
            if record.active() && record.role != role {
                record.role = role;
                changed.push(user.clone());
            }
        }
    }
    changed
}
