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
                labels.push(("fault", fault.to_string()));
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
            "Latency of calls, estimated from the sampled ones (one in 64, and the \
             first of each 5 ms tick) scaled to every call made.",
            None,
            MetricType::Histogram,
        )?;
        for m in &all {
            let (sum, count, buckets) = scaled_to_calls(m);
            family
                .encode_family(&labels(m))?
                .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        }
        Ok(())
    }
}

/// The sampled latency histogram of `m` scaled to every call it counts:
/// (sum in seconds, count, per-bucket counts ending with `+Inf`). Timing
/// every call would cost it two clock reads; scaling at the scrape costs a
/// call nothing, and the count then matches `hotslot_calls_total`, as a
/// reader of the two expects. Cumulative counts are scaled, then rounded,
/// so buckets never go down and the last is exactly the calls made.
fn scaled_to_calls(m: &Metrics) -> (f64, u64, Vec<(f64, u64)>) {
    let sampled: u64 = m.latency_buckets.iter().map(|(_, count)| count).sum();
    // Calls under way have been counted but not yet timed; with nothing
    // timed there is nothing to scale.
    if sampled == 0 {
        return (0.0, 0, vec![(f64::INFINITY, 0)]);
    }
    let scale = m.calls.max(sampled) as f64 / sampled as f64;
    let (mut cumulative, mut given) = (0, 0);
    let mut buckets: Vec<(f64, u64)> = m
        .latency_buckets
        .iter()
        .map(|(edge, count)| {
            cumulative += count;
            let scaled = (cumulative as f64 * scale).round() as u64;
            let this = scaled - given;
            given = scaled;
            (edge.as_secs_f64(), this)
        })
        .collect();
    buckets.push((f64::INFINITY, 0));
    (m.latency_sum.as_secs_f64() * scale, given, buckets)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn sampled(calls: u64, buckets: &[(u64, u64)]) -> Metrics {
        let sum = buckets.iter().map(|(us, n)| us * n).sum();
        Metrics {
            interface: "demo:calc/math@1.0.0".parse().expect("a name"),
            plugin: "calc".into(),
            generation: 1,
            calls,
            failed: Vec::new(),
            latency_p50: None,
            latency_p99: None,
            latency_max: None,
            latency_buckets: buckets
                .iter()
                .map(|(us, n)| (Duration::from_micros(*us), *n))
                .collect(),
            latency_sum: Duration::from_micros(sum),
            reloads: 0,
            rejected_reloads: 0,
            instances: 1,
            memory_bytes: 0,
            state_bytes: 0,
        }
    }

    #[test]
    fn the_histogram_counts_every_call_from_the_sampled_ones() {
        let (sum, count, buckets) = scaled_to_calls(&sampled(300, &[(1, 1), (2, 2)]));
        assert_eq!(count, 300);
        assert_eq!(buckets, [(1e-6, 100), (2e-6, 200), (f64::INFINITY, 0)]);
        assert!((sum - 300.0 * 5e-6 / 3.0).abs() < 1e-12, "{sum}");
        // Rounded cumulatively: never down, and all of the calls in the end.
        let (_, count, buckets) = scaled_to_calls(&sampled(10, &[(1, 1), (2, 1), (4, 1)]));
        assert_eq!(count, 10);
        let counts: Vec<u64> = buckets.iter().map(|(_, n)| *n).collect();
        assert_eq!(counts, [3, 4, 3, 0]);
        // Nothing timed yet (a first call under way): nothing to scale.
        assert_eq!(scaled_to_calls(&sampled(1, &[])).1, 0);
    }
}
