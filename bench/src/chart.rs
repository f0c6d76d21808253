//! SVG line charts for BENCHMARKS.md (plotters, no fonts needed).

use std::path::Path;

use plotters::prelude::*;

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// (x, y) points, x ascending.
    pub points: Vec<(f64, f64)>,
}

/// A chart with logarithmic axes (both quantities span decades).
#[derive(Debug, Clone)]
pub struct LogLogChart<'a> {
    /// Caption.
    pub title: &'a str,
    /// X axis description.
    pub x_label: &'a str,
    /// Y axis description.
    pub y_label: &'a str,
    /// The lines.
    pub series: Vec<Series>,
}

const COLOURS: [RGBColor; 4] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x55, 0x55, 0x55),
    RGBColor(0x2c, 0xa0, 0x2c),
];

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        (0.1, 10.0)
    } else {
        (lo / 2.0, hi * 2.0)
    }
}

impl LogLogChart<'_> {
    /// Write the chart as an SVG file.
    pub fn write_svg(&self, path: &Path) -> Result<(), String> {
        let err = |e: &dyn std::fmt::Display| format!("chart {}: {e}", path.display());
        let points = || self.series.iter().flat_map(|s| s.points.iter());
        let (x0, x1) = bounds(points().map(|p| p.0));
        let (y0, y1) = bounds(points().map(|p| p.1));
        let root = SVGBackend::new(path, (720, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(self.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc(self.x_label)
            .y_desc(self.y_label)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| {
                if *v >= 10.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.1}")
                }
            })
            .draw()
            .map_err(|e| err(&e))?;
        for (i, s) in self.series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    colour.stroke_width(2),
                ))
                .map_err(|e| err(&e))?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
            chart
                .draw_series(s.points.iter().map(|p| Circle::new(*p, 4, colour.filled())))
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg_with_every_series() {
        let dir = std::env::temp_dir().join(format!("rm-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.svg");
        LogLogChart {
            title: "refresh calls",
            x_label: "N",
            y_label: "calls",
            series: vec![
                Series {
                    name: "one".into(),
                    points: vec![(1.0, 1.0), (10.0, 1.0)],
                },
                Series {
                    name: "many".into(),
                    points: vec![(1.0, 1.0), (10.0, 9.0)],
                },
            ],
        }
        .write_svg(&path)
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.contains("one") && svg.contains("many"));
        assert!(svg.contains("refresh calls"));
    }
}
