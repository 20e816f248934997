//! `logwharf top`: a live view of the running daemon, refreshed every second from `/status`
//! (ratatui on crossterm): containers sorted by write rate or lag with each sink's state, the
//! sinks with their state, throughput, buffer and last error. Keys: `r` sort by rate, `l` by
//! lag, `/` filter containers by name (Enter keeps it, Esc clears it), `q` quits.

use super::status::{container_name, sink_cell};
use super::{fetch_status, human_bytes};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use ratatui::Frame;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const REFRESH: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sort {
    Rate,
    Lag,
}

struct App {
    addr: SocketAddr,
    sort: Sort,
    filter: String,
    editing: bool,
    doc: Value,
    error: Option<String>,
}

pub fn run(addr: SocketAddr) -> anyhow::Result<()> {
    // Fail before taking over the terminal when nobody answers.
    let doc = fetch_status(addr)?;
    let mut app = App {
        addr,
        sort: Sort::Rate,
        filter: String::new(),
        editing: false,
        doc,
        error: None,
    };
    let mut terminal = ratatui::init();
    let r = app.run(&mut terminal);
    ratatui::restore();
    r
}

impl App {
    fn run(&mut self, terminal: &mut ratatui::DefaultTerminal) -> anyhow::Result<()> {
        let mut fetched = Instant::now();
        loop {
            terminal.draw(|f| self.draw(f))?;
            let wait = REFRESH.saturating_sub(fetched.elapsed());
            if event::poll(wait)? {
                if let Event::Key(k) = event::read()? {
                    if k.kind == KeyEventKind::Press && self.key(k.code, k.modifiers) {
                        return Ok(());
                    }
                }
            }
            if fetched.elapsed() >= REFRESH {
                fetched = Instant::now();
                match fetch_status(self.addr) {
                    Ok(d) => {
                        self.doc = d;
                        self.error = None;
                    }
                    Err(e) => self.error = Some(format!("{e:#}")),
                }
            }
        }
    }

    /// Handles a key; `true` to quit.
    fn key(&mut self, code: KeyCode, mods: KeyModifiers) -> bool {
        if mods.contains(KeyModifiers::CONTROL) && code == KeyCode::Char('c') {
            return true;
        }
        if self.editing {
            match code {
                KeyCode::Enter => self.editing = false,
                KeyCode::Esc => {
                    self.editing = false;
                    self.filter.clear();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) => self.filter.push(c),
                _ => {}
            }
            return false;
        }
        match code {
            KeyCode::Char('q') | KeyCode::Esc => return true,
            KeyCode::Char('r') => self.sort = Sort::Rate,
            KeyCode::Char('l') => self.sort = Sort::Lag,
            KeyCode::Char('/') => {
                self.editing = true;
                self.filter.clear();
            }
            _ => {}
        }
        false
    }

    fn draw(&self, f: &mut Frame) {
        let empty = Vec::new();
        let sinks = self.doc["sinks"].as_array().unwrap_or(&empty);
        let [head, body, foot, keys] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(5),
            Constraint::Length(sinks.len() as u16 + 3),
            Constraint::Length(1),
        ])
        .areas(f.area());

        let sort = match self.sort {
            Sort::Rate => "rate",
            Sort::Lag => "lag",
        };
        let mut title = format!(
            "logwharf top — {}  {}  health: {}  sort: {sort}",
            self.addr,
            self.doc["time"].as_str().unwrap_or(""),
            self.doc["health"].as_str().unwrap_or("?"),
        );
        if !self.filter.is_empty() || self.editing {
            title.push_str(&format!(
                "  filter: {}{}",
                self.filter,
                if self.editing { "_" } else { "" }
            ));
        }
        if let Some(e) = &self.error {
            title.push_str(&format!("  ERROR: {e}"));
        }
        f.render_widget(
            Paragraph::new(title).style(Style::new().add_modifier(Modifier::BOLD)),
            head,
        );

        let sink_names: Vec<&str> = sinks.iter().filter_map(|s| s["name"].as_str()).collect();
        let mut containers: Vec<&Value> = self.doc["containers"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .filter(|c| self.filter.is_empty() || container_name(c).contains(&self.filter))
            .collect();
        let key = |c: &Value| match self.sort {
            Sort::Rate => c["bytes_in_per_sec"].as_f64().unwrap_or(0.0),
            Sort::Lag => c["lag_bytes"].as_f64().unwrap_or(0.0),
        };
        containers.sort_by(|a, b| {
            key(b)
                .total_cmp(&key(a))
                .then_with(|| container_name(a).cmp(&container_name(b)))
        });
        let mut header = vec![
            "CONTAINER".to_string(),
            "IN/S".into(),
            "OUT/S".into(),
            "LAG".into(),
        ];
        header.extend(sink_names.iter().map(|n| n.to_uppercase()));
        let rows = containers.iter().map(|c| {
            let per_sink = c["sinks"].as_array().unwrap_or(&empty);
            let mut cells = vec![
                Cell::from(container_name(c)),
                Cell::from(human_bytes(c["bytes_in_per_sec"].as_f64().unwrap_or(0.0))),
                Cell::from(human_bytes(c["bytes_out_per_sec"].as_f64().unwrap_or(0.0))),
                Cell::from(human_bytes(c["lag_bytes"].as_f64().unwrap_or(0.0))),
            ];
            for name in &sink_names {
                let s = per_sink.iter().find(|s| s["sink"].as_str() == Some(name));
                let text = s.map_or("-".to_string(), sink_cell);
                cells
                    .push(Cell::from(text).style(state_style(s.and_then(|s| s["state"].as_str()))));
            }
            Row::new(cells)
        });
        let mut widths = vec![
            Constraint::Length(24),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(9),
        ];
        widths.extend(sink_names.iter().map(|_| Constraint::Min(12)));
        let n = containers.len();
        f.render_widget(
            Table::new(rows, widths)
                .header(Row::new(header).style(Style::new().add_modifier(Modifier::REVERSED)))
                .block(
                    Block::new()
                        .borders(Borders::TOP)
                        .title(format!(" containers ({n}) ")),
                ),
            body,
        );

        let rows = sinks.iter().map(|s| {
            let buffer = match (s["buffer_events"].as_u64(), s["buffer_max_events"].as_u64()) {
                (Some(n), Some(m)) => format!("{n}/{m}"),
                _ => "-".into(),
            };
            Row::new(vec![
                Cell::from(s["name"].as_str().unwrap_or("?").to_string()),
                Cell::from(s["type"].as_str().unwrap_or("").to_string()),
                Cell::from(s["state"].as_str().unwrap_or("?").to_string())
                    .style(state_style(s["state"].as_str())),
                Cell::from(format!("{}", s["events_per_sec"])),
                Cell::from(human_bytes(s["bytes_per_sec"].as_f64().unwrap_or(0.0))),
                Cell::from(buffer),
                Cell::from(s["retries"].to_string()),
                Cell::from(s["last_error"].as_str().unwrap_or("").to_string()),
            ])
        });
        let widths = [
            Constraint::Length(14),
            Constraint::Length(10),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(13),
            Constraint::Length(8),
            Constraint::Min(20),
        ];
        let header = [
            "SINK",
            "TYPE",
            "STATE",
            "EVENTS/S",
            "BYTES/S",
            "BUFFER",
            "RETRIES",
            "LAST ERROR",
        ];
        f.render_widget(
            Table::new(rows, widths)
                .header(Row::new(header).style(Style::new().add_modifier(Modifier::REVERSED)))
                .block(Block::new().borders(Borders::TOP).title(" sinks ")),
            foot,
        );
        f.render_widget(
            Paragraph::new(Line::from(
                "r: sort by rate  l: sort by lag  /: filter  q: quit",
            )),
            keys,
        );
    }
}

fn state_style(state: Option<&str>) -> Style {
    match state {
        Some("up") => Style::new().fg(Color::Green),
        Some("retrying") => Style::new().fg(Color::Yellow),
        Some("down") => Style::new().fg(Color::Red),
        _ => Style::new(),
    }
}
