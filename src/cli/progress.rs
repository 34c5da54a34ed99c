//! Layer progress of `pull` and `push` on a terminal: one bar per layer and a
//! total with throughput and ETA, drawn from Docker's JSON progress messages.
//! Off a terminal the caller prints a line per layer event instead (a CI log
//! stays readable), as the docker CLI does.

use std::collections::HashMap;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::apitypes::system::JsonMessage;

const LAYER_WAITING: &str = "{prefix:.bold}: {msg}";
const LAYER_MOVING: &str = "{prefix:.bold}: {msg:<12} [{bar:30}] {bytes:>9}/{total_bytes:<9}";
const TOTAL: &str = "{msg:<14} [{bar:30}] {bytes:>9}/{total_bytes:<9} {binary_bytes_per_sec:>11} ETA {eta}";

/// The bars of one pull or push.
pub struct LayerBoard {
    multi: MultiProgress,
    /// Where lines go: the terminal the bars are drawn on.
    on_stderr: bool,
    layers: HashMap<String, Layer>,
    total: ProgressBar,
}

/// A layer's bar and the bytes it counts toward the total.
struct Layer {
    bar: ProgressBar,
    /// Of the transfer (download or upload), not of extraction.
    current: u64,
    size: u64,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> ")
}

impl LayerBoard {
    /// A board drawing on stdout's terminal, or stderr's.
    pub fn new(on_stderr: bool) -> LayerBoard {
        let target = if on_stderr { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::stdout() };
        let multi = MultiProgress::with_draw_target(target);
        let total = multi.add(ProgressBar::new(0));
        total.set_style(style(TOTAL));
        total.set_message("Total");
        LayerBoard { multi, on_stderr, layers: HashMap::new(), total }
    }

    /// Shows one message: a layer's step moves its bar; anything else is a line above the bars.
    pub fn show(&mut self, msg: &JsonMessage) {
        let status = msg.status.as_deref().unwrap_or("");
        let line_only = msg.id.is_none() || status.starts_with("Pulling from") || status.starts_with("The push refers to");
        if line_only {
            let line = match (&msg.id, &msg.stream) {
                (_, Some(stream)) => stream.trim_end().to_string(),
                (Some(id), None) => format!("{id}: {status}"),
                (None, None) => status.to_string(),
            };
            let on_stderr = self.on_stderr;
            self.multi.suspend(|| if on_stderr { eprintln!("{line}") } else { println!("{line}") });
            return;
        }
        let id = msg.id.clone().unwrap_or_default();
        let multi = &self.multi;
        let total_bar = &self.total;
        let layer = self.layers.entry(id.clone()).or_insert_with(|| {
            // New layers go above the total, which stays last.
            let bar = multi.insert_before(total_bar, ProgressBar::new(0));
            bar.set_style(style(LAYER_WAITING));
            bar.set_prefix(id);
            Layer { bar, current: 0, size: 0 }
        });
        layer.bar.set_message(status.to_string());
        let detail = msg.progress_detail.as_ref().filter(|p| p.total > 0);
        let transfer = matches!(status, "Downloading" | "Pushing");
        match detail {
            Some(p) => {
                layer.bar.set_style(style(LAYER_MOVING));
                layer.bar.set_length(p.total);
                layer.bar.set_position(p.current.min(p.total));
                if transfer {
                    layer.current = p.current.min(p.total);
                    layer.size = p.total;
                }
            }
            None => {
                layer.bar.set_style(style(LAYER_WAITING));
                // A finished transfer counts whole toward the total.
                if matches!(status, "Download complete" | "Pushed" | "Verifying Checksum") {
                    layer.current = layer.size;
                }
            }
        }
        let (current, size) = self.layers.values().fold((0, 0), |(c, s), l| (c + l.current, s + l.size));
        self.total.set_length(size);
        self.total.set_position(current);
    }

    /// Leaves the bars drawn as they ended.
    pub fn finish(self) {
        for layer in self.layers.values() {
            layer.bar.finish();
        }
        self.total.finish();
    }
}
