//! SVG line plots of a run: fitness per generation and meta-test learning curves. The only
//! module that names plotters.

use std::path::Path;

use plotters::prelude::*;

/// Drawing failed (the message names the file).
#[derive(Debug, thiserror::Error)]
#[error("plotting {path}: {msg}")]
pub struct PlotError {
    pub path: String,
    pub msg: String,
}

/// One named line of `(x, y)` points.
pub struct Series<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// The lines' colours, in order.
const COLOURS: [RGBColor; 6] = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];

/// Draws `series` as lines into an SVG at `path`.
pub fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series<'_>],
) -> Result<(), PlotError> {
    let err = |e: &dyn std::fmt::Display| PlotError {
        path: path.display().to_string(),
        msg: e.to_string(),
    };
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    lines_on(&root, title, x_label, y_label, series).map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// [`lines`] on a drawing area; the error is the message.
fn lines_on<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series<'_>],
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let finite = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for &(x, y) in finite {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if !x0.is_finite() {
        return Err(err(&"no finite point to draw"));
    }
    let mut ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|y| y.is_finite())
        .collect();
    let clip = outlier_clip(&mut ys).filter(|&c| c < y1);
    if let Some(c) = clip {
        y1 = c;
    }
    let title = match clip {
        Some(c) => format!("{title} (values above {c:.4} drawn at the top)"),
        None => title.to_string(),
    };
    // A little room around the data, and a non-empty range when every value is equal.
    let pad = |lo: f64, hi: f64| {
        let d = if hi > lo {
            (hi - lo) * 0.05
        } else {
            lo.abs().max(1.0) * 0.05
        };
        (lo - d, hi + d)
    };
    let ((x0, x1), (y0, y1)) = (pad(x0, x1), pad(y0, y1));
    area.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(area)
        .caption(&title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()
        .map_err(|e| err(&e))?;
    for (s, colour) in series.iter().zip(COLOURS.iter().cycle()) {
        let points = s
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| (x, y.min(y1)));
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(s.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    Ok(())
}

/// Two panels side by side: left, each group's values as points over its name (a method's
/// test metric per search seed, with the mean as a bar); right, one line per group (its mean
/// meta-test curve).
pub fn comparison(
    path: &Path,
    metric: &str,
    groups: &[(&str, Vec<f64>)],
    curves: &[Series<'_>],
) -> Result<(), PlotError> {
    let err = |e: &dyn std::fmt::Display| PlotError {
        path: path.display().to_string(),
        msg: e.to_string(),
    };
    let values: Vec<f64> = groups
        .iter()
        .flat_map(|g| g.1.iter().copied())
        .filter(|v| v.is_finite())
        .collect();
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return Err(err(&"no finite value to draw"));
    }
    let d = if hi > lo {
        (hi - lo) * 0.1
    } else {
        lo.abs().max(1.0) * 0.05
    };
    let root = SVGBackend::new(path, (1400, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (left, right) = root.split_horizontally(560);
    let n = groups.len();
    let mut chart = ChartBuilder::on(&left)
        .caption(format!("test {metric} per search seed"), ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), (lo - d)..(hi + d))
        .map_err(|e| err(&e))?;
    let label = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
            groups[i as usize].0.to_string()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .x_labels(n.max(1) * 2 + 1)
        .x_label_formatter(&label)
        .y_desc(metric)
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (_, vals)) in groups.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let finite: Vec<f64> = vals.iter().copied().filter(|v| v.is_finite()).collect();
        chart
            .draw_series(
                finite
                    .iter()
                    .map(|&v| Circle::new((i as f64, v), 4, colour.filled())),
            )
            .map_err(|e| err(&e))?;
        if !finite.is_empty() {
            let mean = finite.iter().sum::<f64>() / finite.len() as f64;
            let bar = vec![(i as f64 - 0.25, mean), (i as f64 + 0.25, mean)];
            chart
                .draw_series(LineSeries::new(bar, colour.stroke_width(2)))
                .map_err(|e| err(&e))?;
        }
    }
    drop(chart);
    lines_on(
        &right,
        "meta-testing: test curve (mean)",
        "training step",
        metric,
        curves,
    )
    .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Where to cut the y axis so that a few spikes (a generation's median fitness blowing up) do
/// not flatten everything else: above the 90th percentile plus three times its distance from
/// the minimum, when some values lie beyond that. `None` keeps the whole range.
fn outlier_clip(ys: &mut [f64]) -> Option<f64> {
    if ys.len() < 5 {
        return None;
    }
    ys.sort_by(f64::total_cmp);
    let (lo, hi) = (ys[0], ys[ys.len() - 1]);
    let p90 = ys[(ys.len() - 1) * 9 / 10];
    let cut = p90 + 3.0 * (p90 - lo).max(f64::EPSILON * lo.abs().max(1.0));
    (hi > cut).then_some(cut)
}

/// The mean over seeds of per-seed curves sampled at the same steps (seeds whose curve ended
/// early, by divergence, stop counting where they end).
pub fn mean_curve(curves: &[&[(usize, f64)]]) -> Vec<(f64, f64)> {
    let longest = curves.iter().map(|c| c.len()).max().unwrap_or(0);
    (0..longest)
        .filter_map(|i| {
            let at: Vec<&(usize, f64)> = curves.iter().filter_map(|c| c.get(i)).collect();
            let mean = at.iter().map(|p| p.1).sum::<f64>() / at.len() as f64;
            at.first().map(|p| (p.0 as f64, mean))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spikes_are_clipped_and_said_so() {
        let dir = tempfile::Builder::new()
            .prefix("evomal-plot-")
            .tempdir()
            .unwrap();
        let path = dir.path().join("f.svg");
        let best: Vec<(f64, f64)> = (0..20).map(|g| (g as f64, 0.5 - g as f64 * 0.01)).collect();
        let mut median = best.clone();
        median[3].1 = 1e9;
        let series = [
            Series {
                name: "best",
                points: best.clone(),
            },
            Series {
                name: "median",
                points: median,
            },
        ];
        lines(&path, "fitness", "generation", "mse", &series).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("drawn at the top"), "the clip is said");
        let series = [Series {
            name: "best",
            points: best,
        }];
        lines(&path, "fitness", "generation", "mse", &series).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(!svg.contains("drawn at the top"), "nothing to clip");
    }
}
