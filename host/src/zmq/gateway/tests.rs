//! The gateway against a recording replier: order, envelopes, limits, retries, answers.

use super::*;
use crate::pipeline::Stored;
use serde_json::{Value, json};

/// Answers as (client, frames after the client).
#[derive(Default)]
struct Sent {
    answers: Vec<(Vec<u8>, Vec<Vec<u8>>)>,
    full: bool,
    gone: bool,
}

impl Replier for Sent {
    fn reply(
        &mut self,
        client: &[u8],
        envelope: Option<&[Vec<u8>]>,
        body: &[&[u8]],
    ) -> Result<(), zmq::Error> {
        if self.gone {
            return Err(zmq::Error::EHOSTUNREACH);
        }
        if self.full {
            return Err(zmq::Error::EAGAIN);
        }
        let mut frames = Vec::new();
        if let Some(envelope) = envelope {
            frames.extend(envelope.iter().cloned());
            frames.push(Vec::new());
        }
        frames.extend(body.iter().map(|f| f.to_vec()));
        self.answers.push((client.to_vec(), frames));
        Ok(())
    }
}

impl Sent {
    fn statuses(&self) -> Vec<String> {
        self.answers
            .iter()
            .map(|(_, frames)| {
                let body: Value =
                    serde_json::from_slice(frames.last().expect("a body")).expect("JSON");
                body["status"].as_str().expect("a status").to_owned()
            })
            .collect()
    }
}

fn gateway(max_in_flight: usize, dedup_window: usize) -> Gateway {
    let limits = Limits {
        timeout: Duration::from_secs(5),
        max_in_flight,
        dedup_window,
        envelope: false,
    };
    Gateway::new(limits, Arc::default()).expect("a socket pair")
}

fn kafka(ack: &Ack, offset: i64) {
    ack.stored(&"out".into(), Some((&"topic".into(), 0, offset)));
}

#[test]
fn answers_in_each_clients_order_with_its_envelope() {
    let mut g = gateway(10, 0);
    let mut out = Sent::default();
    let now = Instant::now();
    let a1 = g.admit(b"a", Some(vec![b"1".to_vec()]), None, now, &mut out);
    let a2 = g.admit(b"a", None, None, now, &mut out);
    let b1 = g.admit(b"b", Some(Vec::new()), None, now, &mut out);
    let (a1, a2, b1) = (a1.expect("a1"), a2.expect("a2"), b1.expect("b1"));
    kafka(&a2, 7);
    drop(a2);
    kafka(&b1, 8);
    drop(b1);
    g.answer(now, &mut out);
    assert_eq!(out.answers.len(), 1, "a's second waits for its first");
    assert_eq!(out.answers[0].0, b"b");
    assert_eq!(
        out.answers[0].1[0], b"",
        "a REQ client gets its delimiter back"
    );
    kafka(&a1, 6);
    drop(a1);
    g.answer(now, &mut out);
    let a: Vec<&Vec<Vec<u8>>> = out
        .answers
        .iter()
        .filter(|(c, _)| c == b"a")
        .map(|(_, f)| f)
        .collect();
    assert_eq!(a.len(), 2);
    assert_eq!(a[0][..2], [b"1".to_vec(), Vec::new()], "request id echoed");
    let first: Value = serde_json::from_slice(&a[0][2]).expect("JSON");
    assert_eq!(first["records"][0]["offset"], 6);
    assert_eq!(a[1].len(), 1, "a plain DEALER request gets one frame");
    let second: Value = serde_json::from_slice(&a[1][0]).expect("JSON");
    assert_eq!(
        second,
        json!({"status": "ok", "records": [{"output": "out", "topic": "topic", "partition": 0, "offset": 7}]})
    );
    assert!(g.is_idle());
}

#[test]
fn busy_timeout_and_gone_clients() {
    let mut g = gateway(2, 0);
    let mut out = Sent::default();
    let now = Instant::now();
    let first = g.admit(b"a", None, None, now, &mut out).expect("first");
    let _second = g.admit(b"a", None, None, now, &mut out).expect("second");
    assert!(g.admit(b"a", None, None, now, &mut out).is_none());
    assert_eq!(out.statuses(), ["busy"]);
    g.answer(now + Duration::from_secs(6), &mut out);
    assert_eq!(out.statuses(), ["busy", "timeout", "timeout"]);
    assert!(g.is_idle());
    drop(first);
    g.answer(now + Duration::from_secs(7), &mut out);
    assert_eq!(
        out.statuses().len(),
        3,
        "a settled request already answered"
    );

    let late = g.admit(b"c", None, None, now, &mut out).expect("late");
    out.gone = true;
    drop(late);
    g.answer(now, &mut out);
    assert_eq!(g.stats.unroutable.load(Ordering::Relaxed), 1);
    assert!(g.is_idle());
}

#[test]
fn only_requests_unanswered_at_their_deadline_time_out() {
    let mut g = gateway(10, 0);
    let mut out = Sent::default();
    let start = Instant::now();
    let at = |s| start + Duration::from_secs(s);
    let a = g.admit(b"a", None, None, at(0), &mut out).expect("a");
    let b = g.admit(b"b", None, None, at(1), &mut out).expect("b");
    let c = g.admit(b"a", None, None, at(2), &mut out).expect("c");
    drop(a);
    g.answer(at(2), &mut out);
    assert_eq!(out.statuses(), ["dropped"]);
    g.answer(at(5), &mut out);
    assert_eq!(out.statuses(), ["dropped"], "answered before its deadline");
    g.answer(at(6), &mut out);
    assert_eq!(
        out.statuses(),
        ["dropped", "timeout"],
        "b's deadline is 6 s"
    );
    drop(c);
    drop(b);
    g.answer(at(6), &mut out);
    assert_eq!(out.statuses(), ["dropped", "timeout", "dropped"]);
    assert_eq!(out.answers[1].0, b"b");
    assert!(g.is_idle());
}

#[test]
fn a_full_client_queue_holds_its_answers_until_there_is_room() {
    let mut g = gateway(10, 0);
    let mut out = Sent {
        full: true,
        ..Sent::default()
    };
    let now = Instant::now();
    drop(g.admit(b"a", None, None, now, &mut out));
    g.answer(now, &mut out);
    assert!(out.answers.is_empty());
    assert!(!g.is_idle());
    out.full = false;
    g.answer(now, &mut out);
    assert_eq!(out.statuses(), ["dropped"]);
}

#[test]
fn a_retry_gets_the_first_result() {
    let mut g = gateway(10, 100);
    let mut out = Sent::default();
    let now = Instant::now();
    let id = || Some(b"msg-1".to_vec());
    let first = g.admit(b"a", None, id(), now, &mut out).expect("first");
    assert!(
        g.admit(b"b", None, id(), now, &mut out).is_none(),
        "a retry in flight is not produced again"
    );
    kafka(&first, 3);
    drop(first);
    g.answer(now, &mut out);
    assert!(
        g.admit(b"c", None, id(), now, &mut out).is_none(),
        "nor is a retry after the answer"
    );
    let bodies: Vec<Value> = out
        .answers
        .iter()
        .map(|(_, f)| serde_json::from_slice(&f[0]).expect("JSON"))
        .collect();
    assert_eq!(bodies.len(), 3);
    for body in &bodies {
        assert_eq!(body["records"][0]["offset"], 3);
    }
    assert_eq!(bodies[0].get("duplicate"), None);
    assert_eq!(bodies[1]["duplicate"], true);
    assert_eq!(bodies[2]["duplicate"], true);

    // A failed request is tried again.
    let failing = g
        .admit(b"a", None, Some(b"msg-2".to_vec()), now, &mut out)
        .expect("new");
    failing.fail_with("delivery", || "broker down".to_owned());
    drop(failing);
    g.answer(now, &mut out);
    assert!(
        g.admit(b"a", None, Some(b"msg-2".to_vec()), now, &mut out)
            .is_some()
    );
}

#[test]
fn statuses_rank_failed_rejected_ok_dropped() {
    let answer = |receipt: &Receipt| {
        let mut out = String::new();
        let status = render(receipt, false, &mut out);
        let body: Value = serde_json::from_str(&out).expect("JSON");
        assert_eq!(body["status"], status);
        body
    };
    let mut receipt = Receipt {
        dropped: true,
        ..Receipt::default()
    };
    assert_eq!(
        answer(&receipt),
        json!({"status": "dropped", "reason": "a plugin dropped it"})
    );
    receipt.records.push(Stored {
        output: "zmq".into(),
        kafka: None,
    });
    assert_eq!(
        answer(&receipt),
        json!({"status": "ok", "records": [{"output": "zmq"}]})
    );
    receipt.rejected = Some(("filter".into(), "not \"JSON\"\n".into()));
    let body = answer(&receipt);
    assert_eq!(body["reason"], "not \"JSON\"\n", "escaped and read back");
    assert_eq!(body["dead_letter"], Value::Null);
    receipt.dead_letters.push(Stored {
        output: "dlq".into(),
        kafka: Some(("dlq".into(), 0, 1)),
    });
    assert_eq!(answer(&receipt)["dead_letter"]["offset"], 1);
    receipt.failed = Some(("trap".into(), "unreachable".into()));
    let body = answer(&receipt);
    assert_eq!(body["status"], "failed");
    assert_eq!(
        body["error"],
        json!({"kind": "trap", "message": "unreachable"})
    );
    assert_eq!(body["dead_letter"]["topic"], "dlq");
}
