//! `switchyard top`: a live view of a running router, read from its admin endpoint
//! (`/metrics` and `/health/ready`) every interval. On a terminal it redraws in place on
//! the alternate screen and quits on `q`, Esc or Ctrl-C; otherwise it prints one plain-text
//! frame per interval, for logs and scripts.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::admin_client::get;
use crate::shutdown::Shutdown;

/// What `switchyard top` was asked for.
pub(super) struct TopOptions {
    /// The admin endpoint, HOST:PORT.
    pub admin: String,
    /// The admin token, if the endpoint needs one.
    pub token: Option<String>,
    /// Time between two frames.
    pub interval: Duration,
    /// Stop after this many frames (default: until quit).
    pub frames: Option<u64>,
}

/// One series of the Prometheus text.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// What one visit to the admin endpoint found.
struct Scrape {
    at: Instant,
    series: Vec<Series>,
    /// `/health/ready`'s verdict: `Ok` when ready, else its explanation.
    ready: Result<(), String>,
}

impl Scrape {
    fn take(admin: &str, token: Option<&str>) -> anyhow::Result<Self> {
        let (status, metrics) = get(admin, token, "/metrics")?;
        if status != 200 {
            bail!("GET /metrics answered {status}");
        }
        let ready = match get(admin, None, "/health/ready")? {
            (200, _) => Ok(()),
            (_, body) => Err(body
                .trim()
                .trim_start_matches("not ready:")
                .trim()
                .replace('\n', "; ")),
        };
        Ok(Scrape {
            at: Instant::now(),
            series: parse(&metrics),
            ready,
        })
    }

    /// Every series named `name`.
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Series> + 'a {
        self.series.iter().filter(move |s| s.name == name)
    }

    /// The value of `name` whose `label` is `value` (summed if several match).
    fn value(&self, name: &str, label: &str, value: &str) -> Option<f64> {
        let mut matching = self
            .all(name)
            .filter(|s| s.labels.get(label).is_some_and(|v| v == value))
            .peekable();
        matching.peek()?;
        Some(matching.map(|s| s.value).sum())
    }

    /// The distinct values of `label` among the series named `name`, in order.
    fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let mut values: Vec<String> = self
            .all(name)
            .filter_map(|s| s.labels.get(label).cloned())
            .collect();
        values.dedup();
        values
    }
}

/// Runs `switchyard top` until quit, or for `options.frames` frames.
pub(super) fn run(options: &TopOptions) -> anyhow::Result<ExitCode> {
    let shutdown = Shutdown::new();
    shutdown.on_signals()?;
    if std::io::stdout().is_terminal() {
        live(options, &shutdown)
    } else {
        plain(options, &shutdown)
    }
}

/// The frame for the scrape `now`, with rates against `before`; or what went wrong.
fn frame(
    admin: &str,
    before: Option<&Scrape>,
    now: &anyhow::Result<Scrape>,
    started: Instant,
) -> Vec<String> {
    let now = match now {
        Ok(now) => now,
        Err(e) => {
            return vec![
                format!("switchyard top: {admin}"),
                format!("cannot read the admin endpoint: {e:#}"),
                "(is the router running, with [admin] listen on this address? retrying)".to_owned(),
            ];
        }
    };
    render(admin, before, now, started)
}

/// Quitting keys on a terminal: `q`, Esc, Ctrl-C.
fn is_quit(event: &crossterm::event::Event) -> bool {
    use crossterm::event::{Event, KeyCode, KeyEventKind, KeyModifiers};
    matches!(event, Event::Key(key) if key.kind == KeyEventKind::Press
        && (matches!(key.code, KeyCode::Char('q') | KeyCode::Esc)
            || (key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL))))
}

/// Restores the terminal however `live` ends.
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = crossterm::execute!(
            std::io::stdout(),
            crossterm::cursor::Show,
            crossterm::terminal::LeaveAlternateScreen
        );
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// Redraws in place on the alternate screen; quits on a key or a signal.
fn live(options: &TopOptions, shutdown: &Shutdown) -> anyhow::Result<ExitCode> {
    use crossterm::{cursor, event, queue, terminal};
    let mut out = std::io::stdout();
    terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
    let _guard = TerminalGuard;
    crossterm::execute!(out, terminal::EnterAlternateScreen, cursor::Hide)?;
    let started = Instant::now();
    let mut before: Option<Scrape> = None;
    let mut shown = 0u64;
    loop {
        let now = Scrape::take(&options.admin, options.token.as_deref());
        queue!(
            out,
            cursor::MoveTo(0, 0),
            terminal::Clear(terminal::ClearType::All)
        )?;
        for line in frame(&options.admin, before.as_ref(), &now, started) {
            // Raw mode: a line feed does not return the carriage.
            write!(out, "{line}\r\n")?;
        }
        write!(out, "\r\nq quits\r\n")?;
        out.flush()?;
        shown += 1;
        if let Ok(now) = now {
            before = Some(now);
        }
        if options.frames.is_some_and(|n| shown >= n) {
            return Ok(ExitCode::SUCCESS);
        }
        let next = Instant::now() + options.interval;
        while let Some(left) = next.checked_duration_since(Instant::now()) {
            // Short slices, so that a signal (outside the terminal) is seen too.
            if shutdown.is_triggered() {
                return Ok(ExitCode::SUCCESS);
            }
            if event::poll(left.min(Duration::from_millis(100)))? {
                let event = event::read()?;
                if is_quit(&event) {
                    return Ok(ExitCode::SUCCESS);
                }
                if matches!(event, event::Event::Resize(..)) {
                    break;
                }
            }
        }
    }
}

/// Prints one frame per interval, each followed by a blank line.
fn plain(options: &TopOptions, shutdown: &Shutdown) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout();
    let started = Instant::now();
    let mut before: Option<Scrape> = None;
    let (mut shown, mut reached) = (0u64, false);
    loop {
        let now = Scrape::take(&options.admin, options.token.as_deref());
        reached |= now.is_ok();
        for line in frame(&options.admin, before.as_ref(), &now, started) {
            writeln!(out, "{line}")?;
        }
        writeln!(out)?;
        out.flush()?;
        shown += 1;
        if let Ok(now) = now {
            before = Some(now);
        }
        if options.frames.is_some_and(|n| shown >= n) || shutdown.wait_timeout(options.interval) {
            break;
        }
    }
    Ok(if reached {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Per second, from `before` to `now`, of `name` with `label` = `value`; `None` on the
/// first frame.
fn rate(
    before: Option<&Scrape>,
    now: &Scrape,
    name: &str,
    label: &str,
    value: &str,
) -> Option<f64> {
    let before = before?;
    let seconds = now.at.duration_since(before.at).as_secs_f64();
    let (a, b) = (
        before.value(name, label, value).unwrap_or(0.0),
        now.value(name, label, value)?,
    );
    (seconds > 0.0).then(|| (b - a).max(0.0) / seconds)
}

/// The 99th percentile of route `route`'s slowest plugin over the interval (since the
/// start on the first frame), as the upper bound of its histogram bucket, in seconds.
fn stage_p99(before: Option<&Scrape>, now: &Scrape, route: &str) -> Option<f64> {
    const NAME: &str = "switchyard_plugin_call_duration_seconds_bucket";
    let buckets = |scrape: &Scrape, plugin: &str| -> Vec<(f64, f64)> {
        let mut v: Vec<(f64, f64)> = scrape
            .all(NAME)
            .filter(|s| {
                s.labels.get("route").is_some_and(|r| r == route)
                    && s.labels.get("plugin").is_some_and(|p| p == plugin)
            })
            .filter_map(|s| {
                let le = s.labels.get("le")?;
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((bound, s.value))
            })
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v
    };
    let mut worst: Option<f64> = None;
    for plugin in now.label_values(NAME, "plugin") {
        let current = buckets(now, &plugin);
        if current.is_empty() {
            continue;
        }
        let previous = before.map(|b| buckets(b, &plugin)).unwrap_or_default();
        let delta: Vec<(f64, f64)> = current
            .iter()
            .map(|(bound, count)| {
                let was = previous
                    .iter()
                    .find(|(b, _)| b == bound)
                    .map_or(0.0, |(_, c)| *c);
                (*bound, count - was)
            })
            .collect();
        let total = delta.last().map_or(0.0, |(_, c)| *c);
        if total <= 0.0 {
            continue;
        }
        if let Some((bound, _)) = delta.iter().find(|(_, c)| *c >= 0.99 * total) {
            worst = Some(worst.map_or(*bound, |w| w.max(*bound)));
        }
    }
    worst
}

fn per_second(x: Option<f64>) -> String {
    match x {
        None => "—".to_owned(),
        Some(x) if x >= 10_000.0 => format!("{:.1}k", x / 1000.0),
        Some(x) => format!("{x:.1}"),
    }
}

fn seconds(x: Option<f64>) -> String {
    match x {
        None => "—".to_owned(),
        Some(x) if x.is_infinite() => "> 0.5 s".to_owned(),
        Some(x) if x < 1e-3 => format!("≤ {:.0} µs", x * 1e6),
        Some(x) => format!("≤ {:.1} ms", x * 1e3),
    }
}

fn render(admin: &str, before: Option<&Scrape>, now: &Scrape, started: Instant) -> Vec<String> {
    let mut lines = Vec::new();
    let info = now.all("switchyard_config_info").next();
    let version = info
        .and_then(|s| s.labels.get("version"))
        .map_or("—", String::as_str);
    let generation = info
        .and_then(|s| s.labels.get("generation"))
        .map_or("—", String::as_str);
    let ready = match &now.ready {
        Ok(()) => "ready".to_owned(),
        Err(why) => format!("NOT READY: {why}"),
    };
    lines.push(format!(
        "switchyard top  {admin}  version {version} (generation {generation})  {ready}  [{}s]",
        started.elapsed().as_secs()
    ));
    let ok = now
        .value("switchyard_reloads_total", "result", "ok")
        .unwrap_or(0.0);
    let refused = now
        .value("switchyard_reloads_total", "result", "error")
        .unwrap_or(0.0);
    let last = now
        .all("switchyard_config_last_reload_successful")
        .next()
        .map_or("—", |s| if s.value > 0.0 { "ok" } else { "REFUSED" });
    lines.push(format!(
        "reloads: {ok} applied, {refused} refused; last load: {last}"
    ));
    lines.push(String::new());

    const IN: &str = "switchyard_route_messages_in_total";
    lines.push(format!(
        "{:<20} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11} {:>12}",
        "ROUTE", "IN/s", "OUT/s", "DROP/s", "REJECT/s", "DEAD/s", "STAGE p99", "IN total"
    ));
    for route in now.label_values(IN, "route") {
        let r = |name: &str| rate(before, now, name, "route", &route);
        let rejected = match (
            r("switchyard_route_messages_rejected_total"),
            r("switchyard_route_messages_failed_total"),
        ) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        lines.push(format!(
            "{:<20} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11} {:>12}",
            route,
            per_second(r(IN)),
            per_second(r("switchyard_route_messages_out_total")),
            per_second(r("switchyard_route_messages_dropped_total")),
            per_second(rejected),
            per_second(r("switchyard_route_dead_letters_total")),
            seconds(stage_p99(before, now, &route)),
            now.value(IN, "route", &route).unwrap_or(0.0),
        ));
    }
    lines.push(String::new());

    lines.push(format!(
        "{:<20} {:>6} {:>14}",
        "INPUT", "READY", "CONSUMER LAG"
    ));
    for input in now.label_values("switchyard_input_ready", "input") {
        let ready = now
            .value("switchyard_input_ready", "input", &input)
            .is_some_and(|v| v > 0.0);
        let lag = now
            .value("switchyard_kafka_consumer_lag", "input", &input)
            .map_or("—".to_owned(), |l| format!("{l:.0}"));
        lines.push(format!(
            "{:<20} {:>6} {:>14}",
            input,
            if ready { "yes" } else { "NO" },
            lag
        ));
    }
    const DROPS: &str = "switchyard_zmq_dropped_total";
    let outputs = now.label_values(DROPS, "output");
    if !outputs.is_empty() {
        lines.push(String::new());
        lines.push(format!(
            "{:<20} {:>12} {:>12}",
            "ZEROMQ OUTPUT", "DROPS/s", "DROPS total"
        ));
        for output in outputs {
            lines.push(format!(
                "{:<20} {:>12} {:>12}",
                output,
                per_second(rate(before, now, DROPS, "output", &output)),
                now.value(DROPS, "output", &output).unwrap_or(0.0),
            ));
        }
    }
    lines
}

/// Parses the Prometheus text exposition format (comments and malformed lines skipped).
fn parse(text: &str) -> Vec<Series> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let (head, value) = line.rsplit_once(' ')?;
            let value: f64 = value.trim().parse().ok()?;
            let (name, labels) = match head.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
                None => (head, BTreeMap::new()),
            };
            Some(Series {
                name: name.to_owned(),
                labels,
                value,
            })
        })
        .collect()
}

/// `a="x",b="y \"quoted\""` into a map, undoing the format's escapes.
fn parse_labels(mut text: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    while !text.is_empty() {
        let (name, rest) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.insert(name.trim().to_owned(), value);
        text = rest[end + 1..].trim_start_matches(',');
    }
    Some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::admin_client::dechunk;

    #[test]
    fn parses_series_with_escaped_labels() {
        let text = "# HELP x y\nswitchyard_reloads_total{result=\"ok\"} 3\n\
                    a{route=\"r \\\"1\\\"\",le=\"+Inf\"} 2.5\nplain 7\nbroken{ 1\n";
        let series = parse(text);
        assert_eq!(series.len(), 3, "{series:?}");
        assert_eq!(series[0].labels["result"], "ok");
        assert_eq!(series[1].labels["route"], "r \"1\"");
        assert_eq!(series[1].labels["le"], "+Inf");
        assert_eq!(series[1].value, 2.5);
        assert_eq!(series[2].name, "plain");
    }

    #[test]
    fn rates_and_p99_come_from_the_difference_of_two_scrapes() {
        let scrape = |at: Instant, n: f64, fast: f64, slow: f64| Scrape {
            at,
            series: parse(&format!(
                "switchyard_route_messages_in_total{{route=\"r\"}} {n}\n\
                 switchyard_plugin_call_duration_seconds_bucket{{route=\"r\",plugin=\"p\",le=\"0.00001\"}} {fast}\n\
                 switchyard_plugin_call_duration_seconds_bucket{{route=\"r\",plugin=\"p\",le=\"0.001\"}} {}\n\
                 switchyard_plugin_call_duration_seconds_bucket{{route=\"r\",plugin=\"p\",le=\"+Inf\"}} {}\n",
                fast + slow,
                fast + slow
            )),
            ready: Ok(()),
        };
        let t0 = Instant::now();
        let before = scrape(t0, 100.0, 1000.0, 0.0);
        let now = scrape(t0 + Duration::from_secs(2), 500.0, 1000.0, 50.0);
        let r = rate(
            Some(&before),
            &now,
            "switchyard_route_messages_in_total",
            "route",
            "r",
        );
        assert_eq!(r, Some(200.0));
        // Over the interval every call was slow, though most since the start were fast.
        assert_eq!(stage_p99(Some(&before), &now, "r"), Some(0.001));
        assert_eq!(stage_p99(None, &now, "r"), Some(0.001));
        assert_eq!(stage_p99(None, &before, "r"), Some(0.00001));
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}
