//! `abacus top`: a terminal dashboard of an abacus server's services.
//!
//! * [`app`]: the state and its update step (events in, state changes out);
//! * [`client`]: polls the query API on an interval into a channel;
//! * [`ui`]: a pure render of the state;
//! * [`input`]: keys to actions.
//!
//! [`run`] owns the terminal: raw mode and the alternate screen are set up by
//! `ratatui::try_init` (which also installs a panic hook that restores the terminal) and
//! undone by `ratatui::restore` on every exit path.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

pub mod app;
pub mod client;
pub mod error;
pub mod input;
pub mod ui;

use std::time::Duration;

use ratatui::crossterm::event::{self, Event as TermEvent};
use tokio::sync::mpsc;

pub use app::{Event, State, update};
pub use client::Client;
pub use error::TopError;

/// What `abacus top` needs.
#[derive(Clone, Debug)]
pub struct TopConfig {
    /// Base URL of the HTTP API.
    pub url: String,
    /// Poll interval.
    pub interval: Duration,
    /// Bearer token.
    pub token: Option<String>,
}

/// Reads terminal events on a plain thread (crossterm's reads block) into `tx` until the
/// receiver is gone.
fn spawn_input(tx: mpsc::Sender<Event>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("abacus-top-input".into())
        .spawn(move || {
            while !tx.is_closed() {
                match event::poll(Duration::from_millis(100)) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(_) => return,
                }
                let ev = match event::read() {
                    Ok(TermEvent::Key(k)) => Event::Key(k),
                    Ok(TermEvent::Resize(..)) => Event::Resize,
                    Ok(_) => continue,
                    Err(_) => return,
                };
                if tx.blocking_send(ev).is_err() {
                    return;
                }
            }
        })
}

/// Runs the dashboard until the user quits.
///
/// # Errors
/// [`TopError::Terminal`] when the terminal cannot be set up or drawn,
/// [`TopError::Client`] when the HTTP client cannot be built.
pub async fn run(config: TopConfig) -> Result<(), TopError> {
    let client = Client::new(&config.url, config.token.clone())?;
    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            // Raw mode may be on already: undo whatever part of the set-up happened.
            ratatui::restore();
            return Err(e.into());
        }
    };
    let result = event_loop(&mut terminal, client, &config).await;
    ratatui::restore();
    result
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    client: Client,
    config: &TopConfig,
) -> Result<(), TopError> {
    let (tx, mut rx) = mpsc::channel::<Event>(64);
    let poller = tokio::spawn(client.run(config.interval, tx.clone()));
    let input = spawn_input(tx)?;
    let mut state = State::new(&config.url);
    let result = loop {
        if let Err(e) = terminal.draw(|f| ui::draw(f, &state)) {
            break Err(TopError::Terminal(e));
        }
        let Some(ev) = rx.recv().await else {
            break Ok(());
        };
        update(&mut state, ev);
        // Apply whatever else is already queued before redrawing.
        while let Ok(ev) = rx.try_recv() {
            update(&mut state, ev);
        }
        if state.quit {
            break Ok(());
        }
    };
    poller.abort();
    drop(rx);
    let _ = input.join();
    result
}
