//! Dashboard state and the update step: every change goes through [`update`] with an
//! [`Event`], so the behaviour is testable without a terminal or a server.

use std::cmp::Ordering;

use ratatui::crossterm::event::{KeyEvent, KeyEventKind};

use crate::client::{Poll, ServiceData};
use crate::input::{Action, map_key};

/// Column the table is sorted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    /// Service name.
    Name,
    /// Requests per second.
    Rate,
    /// Error share.
    Errors,
    /// Median latency.
    P50,
    /// 95th percentile.
    P95,
    /// 99th percentile.
    P99,
    /// Largest latency.
    Max,
}

impl SortKey {
    /// The next key (the `s` key cycles).
    pub fn next(self) -> SortKey {
        match self {
            SortKey::Name => SortKey::Rate,
            SortKey::Rate => SortKey::Errors,
            SortKey::Errors => SortKey::P50,
            SortKey::P50 => SortKey::P95,
            SortKey::P95 => SortKey::P99,
            SortKey::P99 => SortKey::Max,
            SortKey::Max => SortKey::Name,
        }
    }

    /// Label in the header.
    pub fn label(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::Rate => "rate",
            SortKey::Errors => "err%",
            SortKey::P50 => "p50",
            SortKey::P95 => "p95",
            SortKey::P99 => "p99",
            SortKey::Max => "max",
        }
    }

    fn value(self, s: &ServiceData) -> Option<f64> {
        match self {
            SortKey::Name => None,
            SortKey::Rate => Some(s.last.rate),
            SortKey::Errors => s.last.error_share,
            SortKey::P50 => s.last.p50,
            SortKey::P95 => s.last.p95,
            SortKey::P99 => s.last.p99,
            SortKey::Max => s.max(),
        }
    }
}

/// Which screen is shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum View {
    /// One row per service.
    Table,
    /// The windows of one service.
    Detail(String),
}

/// Something that happened.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A poll result (or its error message).
    Data(Result<Poll, String>),
    /// A key press.
    Key(KeyEvent),
    /// The terminal was resized (just redraw).
    Resize,
}

/// Everything the screen shows.
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    /// Server being watched.
    pub url: String,
    /// Last successful poll.
    pub poll: Poll,
    /// Last poll error, cleared by the next success.
    pub error: Option<String>,
    /// Sort column.
    pub sort: SortKey,
    /// Descending order (default for numbers).
    pub descending: bool,
    /// Case-insensitive substring filter on service names.
    pub filter: String,
    /// Whether the filter prompt is open.
    pub editing_filter: bool,
    /// Selected row among the visible ones.
    pub selected: usize,
    /// Current screen.
    pub view: View,
    /// Help overlay shown.
    pub show_help: bool,
    /// Set when the user asked to leave.
    pub quit: bool,
}

impl State {
    /// Empty state for `url`: sorted by rate, highest first.
    pub fn new(url: &str) -> State {
        State {
            url: url.to_owned(),
            poll: Poll::default(),
            error: None,
            sort: SortKey::Rate,
            descending: true,
            filter: String::new(),
            editing_filter: false,
            selected: 0,
            view: View::Table,
            show_help: false,
            quit: false,
        }
    }

    /// Services that pass the filter, in display order.
    pub fn visible(&self) -> Vec<&ServiceData> {
        let needle = self.filter.to_lowercase();
        let mut rows: Vec<&ServiceData> = self
            .poll
            .services
            .values()
            .filter(|s| needle.is_empty() || s.name.to_lowercase().contains(&needle))
            .collect();
        let key = self.sort;
        rows.sort_by(|a, b| {
            let o = match key {
                SortKey::Name => a.name.cmp(&b.name),
                _ => cmp_opt(key.value(a), key.value(b)),
            };
            let o = if self.descending { o.reverse() } else { o };
            o.then_with(|| a.name.cmp(&b.name))
        });
        rows
    }

    /// The service of the detail view, if it still exists.
    pub fn detail(&self) -> Option<&ServiceData> {
        match &self.view {
            View::Detail(name) => self.poll.services.get(name),
            View::Table => None,
        }
    }

    fn clamp_selection(&mut self) {
        let n = self.visible().len();
        self.selected = self.selected.min(n.saturating_sub(1));
    }
}

/// `None` sorts below every number.
fn cmp_opt(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => Ordering::Equal,
    }
}

/// Applies one event.
pub fn update(state: &mut State, event: Event) {
    match event {
        Event::Data(Ok(poll)) => {
            state.poll = poll;
            state.error = None;
            state.clamp_selection();
        }
        Event::Data(Err(e)) => state.error = Some(e),
        Event::Resize => {}
        Event::Key(key) => {
            let action = map_key(key, state.editing_filter);
            if state.show_help && key.kind != KeyEventKind::Release {
                // Any key closes the help, mapped or not; q and Ctrl-C still quit.
                state.show_help = false;
                state.quit = action == Some(Action::Quit);
                return;
            }
            if let Some(action) = action {
                apply(state, action);
            }
        }
    }
}

/// Applies one action (keys are mapped by [`map_key`] first).
pub fn apply(state: &mut State, action: Action) {
    if state.show_help {
        // Any key closes the help; q and Ctrl-C still quit.
        state.show_help = false;
        if action == Action::Quit {
            state.quit = true;
        }
        return;
    }
    match action {
        Action::Quit => state.quit = true,
        Action::Help => state.show_help = true,
        Action::Back => {
            if state.editing_filter {
                state.editing_filter = false;
            } else if state.view != View::Table {
                state.view = View::Table;
            } else if !state.filter.is_empty() {
                state.filter.clear();
            } else {
                state.quit = true;
            }
        }
        Action::Up => state.selected = state.selected.saturating_sub(1),
        Action::Down => {
            state.selected += 1;
            state.clamp_selection();
        }
        Action::Open => {
            if let Some(s) = state.visible().get(state.selected) {
                state.view = View::Detail(s.name.clone());
            }
        }
        Action::NextSort => {
            state.sort = state.sort.next();
            state.descending = state.sort != SortKey::Name;
        }
        Action::Reverse => state.descending = !state.descending,
        Action::StartFilter => {
            state.editing_filter = true;
            state.view = View::Table;
        }
        Action::Char(c) => {
            state.filter.push(c);
            state.selected = 0;
        }
        Action::Backspace => {
            state.filter.pop();
            state.selected = 0;
        }
    }
    state.clamp_selection();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Span;

    pub(crate) fn service(name: &str, rate: f64, p99: f64) -> ServiceData {
        ServiceData {
            name: name.into(),
            last: Span {
                rate,
                p99: Some(p99),
                ..Span::default()
            },
            history: vec![],
        }
    }

    fn state() -> State {
        let mut s = State::new("http://x");
        let mut poll = Poll::default();
        for d in [
            service("api", 10.0, 30.0),
            service("web", 50.0, 5.0),
            service("db", 20.0, 90.0),
        ] {
            poll.services.insert(d.name.clone(), d);
        }
        update(&mut s, Event::Data(Ok(poll)));
        s
    }

    fn names(s: &State) -> Vec<&str> {
        s.visible().iter().map(|d| d.name.as_str()).collect()
    }

    #[test]
    fn default_sort_is_rate_descending_and_s_cycles_keys() {
        let mut s = state();
        assert_eq!(names(&s), ["web", "db", "api"]);
        apply(&mut s, Action::Reverse);
        assert_eq!(names(&s), ["api", "db", "web"]);
        while s.sort != SortKey::P99 {
            apply(&mut s, Action::NextSort);
        }
        assert_eq!(names(&s), ["db", "api", "web"]);
        apply(&mut s, Action::NextSort);
        apply(&mut s, Action::NextSort);
        assert_eq!(s.sort, SortKey::Name);
        assert_eq!(names(&s), ["api", "db", "web"]);
    }

    #[test]
    fn filter_narrows_rows_and_esc_clears_it_before_quitting() {
        let mut s = state();
        apply(&mut s, Action::StartFilter);
        apply(&mut s, Action::Char('W'));
        assert_eq!(names(&s), ["web"]);
        apply(&mut s, Action::Back); // close the prompt
        assert!(!s.editing_filter);
        apply(&mut s, Action::Back); // clear the filter
        assert_eq!(names(&s).len(), 3);
        apply(&mut s, Action::Back); // quit
        assert!(s.quit);
    }

    #[test]
    fn enter_opens_the_selected_service_and_esc_returns() {
        let mut s = state();
        apply(&mut s, Action::Down);
        apply(&mut s, Action::Down);
        apply(&mut s, Action::Down);
        assert_eq!(s.selected, 2);
        apply(&mut s, Action::Open);
        assert_eq!(s.view, View::Detail("api".into()));
        assert_eq!(s.detail().unwrap().name, "api");
        apply(&mut s, Action::Back);
        assert_eq!(s.view, View::Table);
        assert!(!s.quit);
    }

    #[test]
    fn help_closes_on_any_key_and_errors_keep_the_last_data() {
        let mut s = state();
        apply(&mut s, Action::Help);
        assert!(s.show_help);
        apply(&mut s, Action::Down);
        assert!(!s.show_help);
        assert_eq!(s.selected, 0);
        apply(&mut s, Action::Help);
        let f5 = KeyEvent::new(
            ratatui::crossterm::event::KeyCode::F(5),
            ratatui::crossterm::event::KeyModifiers::NONE,
        );
        update(&mut s, Event::Key(f5));
        assert!(!s.show_help && !s.quit);
        update(&mut s, Event::Data(Err("connection refused".into())));
        assert_eq!(s.error.as_deref(), Some("connection refused"));
        assert_eq!(names(&s).len(), 3);
    }
}
