//! Rendering: a pure function of [`State`] (no I/O), so tests draw into a `TestBackend`.

use std::time::{SystemTime, UNIX_EPOCH};

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Clear, Paragraph, Row, Sparkline, Table, TableState};

use crate::app::{State, View};
use crate::client::ServiceData;

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A text sparkline of `values` scaled to their maximum, `width` characters (the newest
/// on the right).
pub fn sparkline(values: &[f64], width: usize) -> String {
    let tail = &values[values.len().saturating_sub(width)..];
    let max = tail.iter().copied().fold(0.0_f64, f64::max);
    tail.iter()
        .map(|&v| {
            if max <= 0.0 {
                BARS[0]
            } else {
                BARS[((v / max) * 7.0).round().clamp(0.0, 7.0) as usize]
            }
        })
        .collect()
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

fn clock(t: SystemTime) -> String {
    let s = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame<'_>, state: &State) {
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(header_line(state), header);
    match state.detail() {
        Some(service) if matches!(state.view, View::Detail(_)) => detail(frame, body, service),
        _ => table(frame, body, state),
    }
    frame.render_widget(footer_line(state), footer);
    if state.show_help {
        help(frame, frame.area());
    }
}

fn header_line(state: &State) -> Paragraph<'static> {
    let mut spans = vec![
        Span::styled("abacus top", Style::default().add_modifier(Modifier::BOLD)),
        Span::raw(format!(
            "  {}  {} services  window {:.0}s  sort {} {}",
            state.url,
            state.poll.services.len(),
            state.poll.window_seconds,
            state.sort.label(),
            if state.descending { "↓" } else { "↑" }
        )),
    ];
    if !state.filter.is_empty() || state.editing_filter {
        spans.push(Span::raw(format!("  filter: {}", state.filter)));
        if state.editing_filter {
            spans.push(Span::styled(
                "_",
                Style::default().add_modifier(Modifier::SLOW_BLINK),
            ));
        }
    }
    if let Some(at) = state.poll.at {
        spans.push(Span::raw(format!("  updated {} UTC", clock(at))));
    }
    if let Some(e) = &state.error {
        spans.push(Span::styled(
            format!("  error: {e}"),
            Style::default().fg(Color::Red),
        ));
    }
    Paragraph::new(Line::from(spans))
}

fn footer_line(state: &State) -> Paragraph<'static> {
    let text = if state.editing_filter {
        "type to filter  enter/esc done  backspace delete"
    } else if matches!(state.view, View::Detail(_)) {
        "esc back  q quit  ? help"
    } else {
        "q quit  ↑↓ select  enter detail  s sort  r reverse  / filter  ? help"
    };
    Paragraph::new(text).style(Style::default().add_modifier(Modifier::DIM))
}

fn table(frame: &mut Frame<'_>, area: Rect, state: &State) {
    let rows: Vec<Row> = state
        .visible()
        .iter()
        .map(|s| {
            let trend: Vec<f64> = s.history.iter().map(|w| w.rate()).collect();
            Row::new(vec![
                Cell::from(s.name.clone()),
                Cell::from(format!("{:.1}", s.last.rate)),
                Cell::from(format!("{:.0}", s.count())),
                Cell::from(
                    s.last
                        .error_share
                        .map_or_else(|| "-".to_owned(), |e| format!("{:.1}", e * 100.0)),
                ),
                Cell::from(ms(s.last.p50)),
                Cell::from(ms(s.last.p95)),
                Cell::from(ms(s.last.p99)),
                Cell::from(ms(s.max())),
                Cell::from(sparkline(&trend, 30)),
            ])
        })
        .collect();
    let empty = rows.is_empty();
    let widths = [
        Constraint::Min(12),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(30),
    ];
    let header = Row::new([
        "SERVICE",
        "REQ/S",
        "COUNT",
        "ERR%",
        "P50 ms",
        "P95 ms",
        "P99 ms",
        "MAX ms",
        "TREND (req/s)",
    ])
    .style(Style::default().add_modifier(Modifier::BOLD));
    let title = if empty {
        " no services yet: waiting for a closed window with latency{service} or requests{service} "
    } else {
        " services (last closed window) "
    };
    let t = Table::new(rows, widths)
        .header(header)
        .block(Block::bordered().title(title))
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ");
    let mut ts = TableState::default().with_selected((!empty).then_some(state.selected));
    frame.render_stateful_widget(t, area, &mut ts);
}

fn detail(frame: &mut Frame<'_>, area: Rect, s: &ServiceData) {
    let [spark, rest] = Layout::vertical([Constraint::Length(6), Constraint::Min(3)]).areas(area);
    let p99: Vec<u64> = s
        .history
        .iter()
        .map(|w| w.p99.unwrap_or(0.0).round() as u64)
        .collect();
    let width = usize::from(spark.width.saturating_sub(2));
    let start = p99.len().saturating_sub(width);
    frame.render_widget(
        Sparkline::default()
            .block(Block::bordered().title(format!(
                " {}: p99 latency per window (max {} ms) ",
                s.name,
                ms(s.history.iter().filter_map(|w| w.p99).reduce(f64::max))
            )))
            .data(&p99[start..])
            .style(Style::default().fg(Color::Cyan)),
        spark,
    );
    let rows: Vec<Row> = s
        .history
        .iter()
        .rev()
        .map(|w| {
            Row::new(vec![
                clock(UNIX_EPOCH + std::time::Duration::from_millis(w.start_ms)),
                format!("{}", w.count),
                format!("{:.1}", w.rate()),
                ms(w.p50),
                ms(w.p95),
                ms(w.p99),
                ms(w.max),
            ])
        })
        .collect();
    let t = Table::new(
        rows,
        [
            Constraint::Length(10),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(8),
        ],
    )
    .header(
        Row::new([
            "START", "COUNT", "REQ/S", "P50 ms", "P95 ms", "P99 ms", "MAX ms",
        ])
        .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(Block::bordered().title(format!(" {}: windows, newest first ", s.name)));
    frame.render_widget(t, rest);
}

/// The help text, one line per key.
pub const HELP: [&str; 9] = [
    "q / Ctrl-C   quit",
    "↑ ↓ / k j    select a service",
    "enter        windows of the selected service",
    "esc          back / clear filter / quit",
    "s            next sort key (name, rate, err%, p50, p95, p99, max)",
    "r            reverse the order",
    "/            filter services by name",
    "? / h        this help (any key closes it)",
    "",
];

fn help(frame: &mut Frame<'_>, area: Rect) {
    let w = 72.min(area.width);
    let h = (HELP.len() as u16 + 2).min(area.height);
    let r = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    frame.render_widget(Clear, r);
    frame.render_widget(
        Paragraph::new(HELP.iter().map(|l| Line::from(*l)).collect::<Vec<_>>())
            .block(Block::bordered().title(" help ")),
        r,
    );
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;

    use super::*;
    use crate::app::{Event, State, apply, update};
    use crate::client::{Poll, ServiceData, Span, WindowPoint};
    use crate::input::Action;

    fn screen(state: &State, w: u16, h: u16) -> Vec<String> {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| draw(f, state)).unwrap();
        lines(t.backend().buffer())
    }

    fn lines(b: &Buffer) -> Vec<String> {
        (0..b.area.height)
            .map(|y| {
                (0..b.area.width)
                    .map(|x| b[(x, y)].symbol().to_owned())
                    .collect::<String>()
            })
            .collect()
    }

    fn sample_state() -> State {
        let mut s = State::new("http://127.0.0.1:3001");
        let mut poll = Poll {
            window_seconds: 10.0,
            ..Poll::default()
        };
        for (name, rate, p99) in [("checkout", 40.0, 120.5), ("search", 80.0, 20.0)] {
            let history: Vec<WindowPoint> = (0..5)
                .map(|i| WindowPoint {
                    start_ms: 1_700_000_000_000 + i * 10_000,
                    end_ms: 1_700_000_010_000 + i * 10_000,
                    count: 100 * (i + 1),
                    max: Some(p99 * 2.0),
                    p50: Some(p99 / 4.0),
                    p95: Some(p99 / 2.0),
                    p99: Some(p99),
                })
                .collect();
            poll.services.insert(
                name.into(),
                ServiceData {
                    name: name.into(),
                    last: Span {
                        start_ms: 1_700_000_040_000,
                        requests: Some(rate * 10.0),
                        errors: Some(2.0),
                        latency_count: (rate * 10.0) as u64,
                        rate,
                        error_share: Some(2.0 / (rate * 10.0)),
                        p50: Some(p99 / 4.0),
                        p95: Some(p99 / 2.0),
                        p99: Some(p99),
                    },
                    history,
                },
            );
        }
        update(&mut s, Event::Data(Ok(poll)));
        s
    }

    #[test]
    fn sparkline_scales_to_the_maximum() {
        assert_eq!(sparkline(&[0.0, 1.0, 2.0, 4.0], 10), "▁▃▅█");
        assert_eq!(sparkline(&[5.0, 5.0, 5.0], 2), "██");
        assert_eq!(sparkline(&[0.0, 0.0], 5), "▁▁");
    }

    #[test]
    fn table_shows_one_row_per_service_sorted_by_rate() {
        let s = sample_state();
        let l = screen(&s, 120, 10);
        assert!(
            l[0].starts_with(
                "abacus top  http://127.0.0.1:3001  2 services  window 10s  sort rate ↓"
            ),
            "{}",
            l[0]
        );
        assert!(l[2].contains("SERVICE") && l[2].contains("P99 ms") && l[2].contains("MAX ms"));
        // search (80/s) before checkout (40/s); the selected row carries the marker.
        assert!(l[3].starts_with("│> search"), "{}", l[3]);
        assert!(l[4].contains("checkout"), "{}", l[4]);
        let cols: Vec<&str> = l[4].split_whitespace().collect();
        assert_eq!(
            &cols[1..9],
            [
                "checkout", "40.0", "400", "0.5", "30.1", "60.2", "120.5", "241.0"
            ]
        );
        assert!(l[4].contains("▂▄▅▇█"), "{}", l[4]);
        assert!(l[9].starts_with("q quit"), "{}", l[9]);
    }

    #[test]
    fn detail_view_lists_windows_newest_first() {
        let mut s = sample_state();
        apply(&mut s, Action::Down);
        apply(&mut s, Action::Open);
        let l = screen(&s, 100, 16);
        assert!(
            l[1].contains("checkout: p99 latency per window (max 120.5 ms)"),
            "{}",
            l[1]
        );
        let table: Vec<&String> = l.iter().filter(|x| x.contains("│22:1")).collect();
        assert_eq!(table.len(), 5, "{l:#?}");
        assert!(table[0].contains("500"), "{}", table[0]);
        assert!(l[15].starts_with("esc back"));
    }

    #[test]
    fn help_overlay_and_filter_prompt_render() {
        let mut s = sample_state();
        apply(&mut s, Action::StartFilter);
        apply(&mut s, Action::Char('s'));
        let l = screen(&s, 120, 10);
        assert!(l[0].contains("filter: s_"), "{}", l[0]);
        assert!(l.iter().any(|x| x.contains("search")));
        apply(&mut s, Action::Back);
        apply(&mut s, Action::Help);
        let l = screen(&s, 120, 14);
        assert!(l.iter().any(|x| x.contains("│q / Ctrl-C   quit")), "{l:#?}");
        assert!(l.iter().any(|x| x.contains("next sort key")));
    }

    #[test]
    fn empty_and_error_states_say_so() {
        let mut s = State::new("http://127.0.0.1:9");
        update(&mut s, Event::Data(Err("connection refused".into())));
        let l = screen(&s, 140, 6);
        assert!(l[0].contains("error: connection refused"), "{}", l[0]);
        assert!(l[1].contains("no services yet"), "{}", l[1]);
    }

    #[test]
    fn tiny_terminal_does_not_panic() {
        let mut s = sample_state();
        let _ = screen(&s, 10, 3);
        apply(&mut s, Action::Help);
        let _ = screen(&s, 5, 2);
    }
}
