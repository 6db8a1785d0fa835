//! Who fenced a static member: its own rejoin, or another instance with its
//! `group.instance.id`.
//!
//! A static member is fenced (`FENCED_INSTANCE_ID`) when a request it sent carries a member
//! id the group coordinator no longer holds for its instance id. That happens in two ways
//! that call for opposite answers:
//!
//! - librdkafka gave the membership up and rejoined: its session timed out, it was not
//!   polled in time, or the coordinator no longer knew the member (a heartbeat answered
//!   `UNKNOWN_MEMBER_ID`, as after the broker itself was frozen). It forgets the member id
//!   *before* it sends the JoinGroup that gets a new one, so a request sent earlier and
//!   answered after that join is fenced by the consumer's own new membership. The input
//!   must start over with a new consumer.
//! - Another instance joined with the same instance id and took the member over. The
//!   consumer's member id is then the one it was given partitions under; starting over
//!   would fence the other instance in turn, for ever, so the input stops.
//!
//! The coordinator cannot tell them apart (a static member that is taken over keeps the
//! client id and host of the one it replaces), but the consumer can: has its member id
//! changed since it was last given partitions?
//!
//! What the coordinator says of the group is still worth a log line when a new consumer
//! cannot get into it ([`describe_group`]).

use std::ffi::CStr;
use std::fmt::Write as _;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::client::Client;

/// The member id librdkafka holds for `client`'s group membership now (empty while it
/// rejoins after giving the membership up); `None` for a client that is not a group
/// member.
pub(super) fn member_id<C: ClientContext>(client: &Client<C>) -> Option<String> {
    let rk = client.native_ptr();
    // SAFETY: `rk` is a live handle for the duration of `client`'s borrow.
    // `rd_kafka_memberid` returns a NUL-terminated copy (or NULL) that the caller frees
    // with `rd_kafka_mem_free`, which happens once, after it is read.
    unsafe {
        let id = rdkafka::bindings::rd_kafka_memberid(rk);
        if id.is_null() {
            return None;
        }
        let owned = CStr::from_ptr(id).to_string_lossy().into_owned();
        rdkafka::bindings::rd_kafka_mem_free(rk, id.cast());
        Some(owned)
    }
}

/// Whether a static member fenced now, whose member id was `assigned_as` when it was last
/// given partitions and is `now`, was fenced by its own rejoin. `None` when it was never
/// given partitions, or librdkafka did not say its member id: the caller decides from what
/// else it knows.
pub(super) fn fenced_by_itself(assigned_as: Option<&str>, now: Option<&str>) -> Option<bool> {
    Some(now? != assigned_as?)
}

/// What the group coordinator says of `group`: its state and members (member id, client
/// id), for the log of a consumer that cannot get into it.
pub(super) fn describe_group<C: ClientContext>(client: &Client<C>, group: &str) -> String {
    let groups = match client.fetch_group_list(Some(group), Duration::from_secs(5)) {
        Ok(groups) => groups,
        Err(e) => return format!("the group could not be described: {e}"),
    };
    // Every broker answers; only the coordinator's answer has a state.
    let Some(found) = groups
        .groups()
        .iter()
        .find(|g| g.name() == group && !g.state().is_empty())
    else {
        return "no broker described the group".to_owned();
    };
    let mut text = format!("the group coordinator has it {}", found.state());
    for (i, member) in found.members().iter().enumerate() {
        let _ = write!(
            text,
            "{} {} ({})",
            if i == 0 { " with" } else { "," },
            member.id(),
            member.client_id()
        );
    }
    if found.members().is_empty() {
        text.push_str(" with no members");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_whose_id_changed_since_its_assignment_fenced_itself() {
        let m1 = Some("router-0-3b241101-e2bb-4255-8caf-4136c566a962");
        let m2 = Some("router-0-0c7cbc3e-3b6f-4f0c-9d54-2ed3f7e1f0b1");
        // Taken over by another instance: the id is still the assigned one.
        assert_eq!(fenced_by_itself(m1, m1), Some(false));
        // Rejoined: the id was forgotten, or replaced by the new join's.
        assert_eq!(fenced_by_itself(m1, Some("")), Some(true));
        assert_eq!(fenced_by_itself(m1, m2), Some(true));
        // Never assigned, or no member id to be had: the member id cannot tell.
        assert_eq!(fenced_by_itself(None, m1), None);
        assert_eq!(fenced_by_itself(m1, None), None);
    }
}
