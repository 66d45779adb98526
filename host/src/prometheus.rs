//! The registry's metrics in the Prometheus text format, for `watch
//! --metrics ADDR`: `_total` counters, gauges and a latency histogram per
//! implementation, labelled `interface` and `plugin`. Encoded by the
//! prometheus-client crate at each scrape.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::metrics::Metrics;
use crate::registry::Registry;

/// The registry's metrics, as a Prometheus scrape would read them.
///
/// ```
/// let registry = std::sync::Arc::new(hotslot::Registry::new().unwrap());
/// let text = hotslot::prometheus::encode(&registry);
/// assert!(text.ends_with("# EOF\n"));
/// ```
pub fn encode(registry: &Arc<Registry>) -> String {
    let mut exported = prometheus_client::registry::Registry::default();
    exported.register_collector(Box::new(Scrape(registry.clone())));
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &exported);
    text
}

/// Reads the registry's metrics at each scrape.
struct Scrape(Arc<Registry>);

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Scrape")
    }
}

/// A family of metrics: its name, its help, and how to read it.
type Family<T> = (&'static str, &'static str, fn(&Metrics) -> T);

fn labels(m: &Metrics) -> Vec<(&'static str, String)> {
    vec![
        ("interface", m.interface.to_string()),
        ("plugin", m.plugin.clone()),
    ]
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let all = self.0.metrics();
        let counters: [Family<u64>; 3] = [
            ("hotslot_calls", "Calls made to an implementation.", |m| {
                m.calls
            }),
            ("hotslot_reloads", "Reloads of the plugin taken.", |m| {
                m.reloads
            }),
            (
                "hotslot_rejected_reloads",
                "Loads and reloads of the plugin refused.",
                |m| m.rejected_reloads,
            ),
        ];
        for (name, help, value) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for m in &all {
                let labels = labels(m);
                family
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&value(m), None)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "hotslot_failed_calls",
            "Calls that failed in the plugin, by fault.",
            None,
            MetricType::Counter,
        )?;
        for m in &all {
            for (fault, count) in &m.failed {
                let mut labels = labels(m);
                labels.push(("fault", fault.word().to_string()));
                family
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(count, None)?;
            }
        }
        let gauges: [Family<i64>; 3] = [
            ("hotslot_instances", "Instances of the plugin alive.", |m| {
                m.instances as i64
            }),
            (
                "hotslot_memory_bytes",
                "Linear memory of the plugin's instances.",
                |m| m.memory_bytes as i64,
            ),
            (
                "hotslot_state_bytes",
                "Keys and values in the plugin's host-kept state.",
                |m| m.state_bytes as i64,
            ),
        ];
        for (name, help, value) in gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for m in &all {
                let labels = labels(m);
                family.encode_family(&labels)?.encode_gauge(&value(m))?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "hotslot_call_latency_seconds",
            "Latency of sampled calls (one in 64, and the first of each 5 ms tick).",
            None,
            MetricType::Histogram,
        )?;
        for m in &all {
            let labels = labels(m);
            let mut seen = 0;
            let mut buckets: Vec<(f64, u64)> = m
                .latency_buckets
                .iter()
                .map(|(edge, count)| {
                    seen += count;
                    (edge.as_secs_f64(), *count)
                })
                .collect();
            buckets.push((f64::INFINITY, 0));
            family
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(
                    m.latency_sum.as_secs_f64(),
                    seen,
                    &buckets,
                    None,
                )?;
        }
        Ok(())
    }
}
