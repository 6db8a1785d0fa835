//! Swapping a [`Plan`] in, one named function per step of the router's documentation:
//! [`Router::stop_changed_inputs`], [`Router::switch_kept_inputs`],
//! [`Router::start_new_inputs`], [`Router::close_unused_outputs`], then
//! [`Router::publish`]. Nothing here fails: every error is logged against the input or
//! output it concerns, and the rest of the set goes on.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::Router;
use super::input::Spawn;
use super::plan::{Inputs, OpenOutput, Plan};
use crate::config::ConfigFile;
use crate::control::ReloadReport;
use crate::pipeline::DRAIN_TIMEOUT;
use crate::state::{RouteInfo, Running};

/// How often a reload that waits for an input to finish a batch says so.
const SWITCH_WARN_EVERY: Duration = Duration::from_secs(5);

impl Router {
    /// Swaps `plan` in, step by step; `started` is when the reload began, for its report.
    pub(super) fn apply(&mut self, plan: Plan, started: Instant) -> ReloadReport {
        let Plan {
            config,
            version,
            new_embedded,
            topics,
            staged,
            outputs,
            opened,
            inputs,
            routes,
        } = plan;
        self.embedded.extend(new_embedded);
        self.metrics.register(staged);
        self.create_topics(topics);
        let mut report = ReloadReport::default();
        report.outputs.opened = opened;
        self.stop_changed_inputs(&inputs, &mut report);
        let (kept, new): (Inputs, Inputs) = inputs
            .into_iter()
            .partition(|(name, _)| self.inputs.contains_key(name));
        let switching = self.switch_kept_inputs(kept, &mut report);
        self.start_new_inputs(new, &mut report);
        wait_for_switches(switching);
        self.close_unused_outputs(outputs, &mut report);
        self.stop_unused_clusters(&config);
        self.publish(config, version, routes, &mut report);
        report.took = started.elapsed();
        report
    }

    /// Before the steps: the topics the new set uses are created in the embedded clusters
    /// that run already (the plan created them in the clusters it started).
    fn create_topics(&self, topics: Vec<(String, String, u32)>) {
        for (cluster, topic, partitions) in topics {
            if let Some(mock) = self.embedded.get(&cluster)
                && let Err(e) = mock.create_topic(&topic, partitions)
            {
                tracing::error!(cluster = %cluster, topic = %topic, "cannot create topic: {e:#}");
            }
        }
    }

    /// Step 1: inputs that were removed, or whose definition changed, stop: they finish
    /// their batch, wait for its deliveries and commit.
    fn stop_changed_inputs(&mut self, inputs: &Inputs, report: &mut ReloadReport) {
        let stopping: Vec<String> = self
            .inputs
            .iter()
            .filter(|(name, input)| {
                inputs
                    .get(*name)
                    .is_none_or(|(kind, _)| *kind != input.kind)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stopping {
            if let Some(input) = self.inputs.remove(&name) {
                input.stop(&name);
                report.inputs.stopped.push(name);
            }
        }
    }

    /// Step 2: every unchanged input is handed its new route runners and switches between
    /// two batches, so a batch is processed entirely by one version; its consumer, group
    /// membership and assignment stay as they are. Returns what to wait on for each.
    fn switch_kept_inputs(
        &mut self,
        kept: Inputs,
        report: &mut ReloadReport,
    ) -> Vec<(String, Receiver<()>)> {
        let mut switching = Vec::new();
        for (name, (_, runners)) in kept {
            if let Some(switched) = self.inputs.get(&name).and_then(|i| i.swap(runners)) {
                switching.push((name.clone(), switched));
            }
            report.inputs.kept.push(name);
        }
        switching
    }

    /// Step 3: added and changed inputs start.
    fn start_new_inputs(&mut self, new: Inputs, report: &mut ReloadReport) {
        for (name, (kind, runners)) in new {
            self.next_input_id += 1;
            let spawn = Spawn {
                zmq: &self.zmq,
                exits: &self.exits.0,
            };
            let stats = self.metrics.input(&name);
            match spawn.start(&name, self.next_input_id, kind, stats, runners) {
                Ok(input) => {
                    self.inputs.insert(name.clone(), input);
                    report.inputs.started.push(name);
                }
                Err(e) => tracing::error!(input = %name, "cannot start: {e:#}"),
            }
        }
    }

    /// Step 4: outputs no route uses any more are flushed and closed.
    fn close_unused_outputs(
        &mut self,
        outputs: BTreeMap<String, OpenOutput>,
        report: &mut ReloadReport,
    ) {
        let old = std::mem::replace(&mut self.outputs, outputs);
        for (name, open) in old {
            let replaced = self
                .outputs
                .get(&name)
                .is_none_or(|new| !Arc::ptr_eq(&new.sink, &open.sink));
            if replaced {
                if let Err(e) = open.sink.flush(DRAIN_TIMEOUT) {
                    tracing::error!(output = %name, "{e:#}");
                }
                drop(open);
                report.outputs.closed.push(name);
            }
        }
    }

    /// Embedded clusters the new file no longer declares stop (after everything that
    /// talked to them).
    fn stop_unused_clusters(&mut self, config: &ConfigFile) {
        self.embedded.retain(|name, _| {
            config
                .kafka
                .get(name)
                .is_some_and(|c| c.get_ref().bootstrap.get_ref() == "embedded")
        });
    }

    /// Last: the new set becomes what `/routes`, `/metrics` and `/health` show.
    fn publish(
        &mut self,
        config: ConfigFile,
        version: String,
        routes: Vec<RouteInfo>,
        report: &mut ReloadReport,
    ) {
        self.generation += 1;
        let inputs = self
            .inputs
            .iter()
            .map(|(name, input)| (name.clone(), Arc::clone(&input.stats)))
            .collect();
        *self.running.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(Running {
            generation: self.generation,
            version: version.clone(),
            loaded_at: SystemTime::now(),
            path: self.path.clone(),
            routes,
            inputs,
        }));
        self.config = Some(config);
        report.generation = self.generation;
        report.version = version;
    }
}

/// Waits until every kept input has switched, saying so while one is still finishing a
/// long batch on the previous version.
fn wait_for_switches(switching: Vec<(String, Receiver<()>)>) {
    for (name, switched) in switching {
        let waiting = Instant::now();
        while let Err(RecvTimeoutError::Timeout) = switched.recv_timeout(SWITCH_WARN_EVERY) {
            tracing::warn!(input = %name, waited_s = waiting.elapsed().as_secs(), "still finishing a batch on the previous version");
        }
    }
}
