//! Keys → [`Action`]s. Pure, so the mapping is testable without a terminal.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// What a key asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Leave (q, Ctrl-C; Esc on the main table).
    Quit,
    /// Selection up.
    Up,
    /// Selection down.
    Down,
    /// Open the selected service (Enter).
    Open,
    /// Close the detail view, the help or the filter prompt (Esc).
    Back,
    /// Next sort key (s).
    NextSort,
    /// Reverse the order (r).
    Reverse,
    /// Start typing a filter (/).
    StartFilter,
    /// Toggle the help overlay (? or h).
    Help,
    /// A character typed into the filter.
    Char(char),
    /// Backspace in the filter.
    Backspace,
}

/// Maps a key; `editing` is true while the filter prompt is open (letters are text then).
pub fn map_key(key: KeyEvent, editing: bool) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Some(Action::Quit);
    }
    if editing {
        return match key.code {
            KeyCode::Enter | KeyCode::Esc => Some(Action::Back),
            KeyCode::Backspace => Some(Action::Backspace),
            KeyCode::Char(c) => Some(Action::Char(c)),
            _ => None,
        };
    }
    Some(match key.code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Esc => Action::Back,
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::Enter => Action::Open,
        KeyCode::Char('s') => Action::NextSort,
        KeyCode::Char('r') => Action::Reverse,
        KeyCode::Char('/') => Action::StartFilter,
        KeyCode::Char('?' | 'h') => Action::Help,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn letters_are_commands_outside_the_filter_and_text_inside_it() {
        assert_eq!(map_key(key(KeyCode::Char('q')), false), Some(Action::Quit));
        assert_eq!(
            map_key(key(KeyCode::Char('q')), true),
            Some(Action::Char('q'))
        );
        assert_eq!(map_key(key(KeyCode::Enter), true), Some(Action::Back));
        assert_eq!(
            map_key(
                KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
                true
            ),
            Some(Action::Quit)
        );
        assert_eq!(map_key(key(KeyCode::F(5)), false), None);
    }
}
