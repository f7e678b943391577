//! A real SMTP server on loopback that accepts and keeps every message, for the outbox tests.
//!
//! It speaks just enough ESMTP for lettre (EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT; no TLS,
//! no AUTH) and can be told to refuse the next messages with a chosen reply code, so tests
//! see transient (4xx) and permanent (5xx) failures as a real server sends them.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// Headers and body, as sent (dot-stuffing undone).
    pub data: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.data
            .lines()
            .take_while(|l| !l.is_empty())
            .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_owned())
    }
}

#[derive(Default)]
struct Shared {
    messages: Vec<Received>,
    /// Replies for the next messages' end of DATA, instead of 250: a code, and the text after
    /// it (the default when `None`).
    refusals: VecDeque<(u16, Option<String>)>,
    /// How long each message's end of DATA waits for its reply: a slow server.
    delay: Duration,
}

#[derive(Clone)]
pub struct SmtpSink {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let state = shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, state.clone()));
            }
        });
        SmtpSink { addr, shared }
    }

    /// For `SMTP_URL`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    pub fn messages(&self) -> Vec<Received> {
        self.shared.lock().unwrap().messages.clone()
    }

    pub fn count(&self) -> usize {
        self.shared.lock().unwrap().messages.len()
    }

    /// The next message gets `code` (e.g. 451 or 550) at the end of DATA, and is not kept.
    pub fn refuse_next(&self, code: u16) {
        self.shared.lock().unwrap().refusals.push_back((code, None));
    }

    /// The next message gets `code` with `text` (sent as given, whatever it holds).
    pub fn refuse_next_saying(&self, code: u16, text: &str) {
        let reply = (code, Some(text.to_owned()));
        self.shared.lock().unwrap().refusals.push_back(reply);
    }

    /// Every later message is answered only after `delay`, as a slow server answers.
    pub fn answer_after(&self, delay: Duration) {
        self.shared.lock().unwrap().delay = delay;
    }

    /// Waits until `n` messages have arrived (or the timeout passes), then returns them.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.count() < n && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.messages()
    }
}

async fn session(stream: TcpStream, shared: Arc<Mutex<Shared>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    if !send(&mut write, "220 sink ESMTP ready").await {
        return;
    }
    let mut mail_from = String::new();
    let mut rcpt_to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = line.trim_end().to_owned();
        let verb = command
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let ok = match verb.as_str() {
            "EHLO" => send(&mut write, "250-sink\r\n250 8BITMIME").await,
            "HELO" => send(&mut write, "250 sink").await,
            "MAIL" => {
                mail_from = address(&command);
                rcpt_to.clear();
                send(&mut write, "250 OK").await
            }
            "RCPT" => {
                rcpt_to.push(address(&command));
                send(&mut write, "250 OK").await
            }
            "DATA" => {
                if !send(&mut write, "354 end with <CRLF>.<CRLF>").await {
                    return;
                }
                let mut data = String::new();
                loop {
                    line.clear();
                    match lines.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let l = line.trim_end_matches(['\r', '\n']);
                    if l == "." {
                        break;
                    }
                    data.push_str(l.strip_prefix('.').unwrap_or(l));
                    data.push('\n');
                }
                let delay = shared.lock().unwrap().delay;
                tokio::time::sleep(delay).await;
                let refusal = shared.lock().unwrap().refusals.pop_front();
                match refusal {
                    Some((code, text)) => {
                        let text = text.as_deref().unwrap_or("refused by the test");
                        send(&mut write, &format!("{code} {text}")).await
                    }
                    None => {
                        shared.lock().unwrap().messages.push(Received {
                            mail_from: mail_from.clone(),
                            rcpt_to: std::mem::take(&mut rcpt_to),
                            data,
                        });
                        send(&mut write, "250 OK queued").await
                    }
                }
            }
            "RSET" => {
                mail_from.clear();
                rcpt_to.clear();
                send(&mut write, "250 OK").await
            }
            "NOOP" => send(&mut write, "250 OK").await,
            "QUIT" => {
                let _ = send(&mut write, "221 bye").await;
                return;
            }
            _ => send(&mut write, "502 command not implemented").await,
        };
        if !ok {
            return;
        }
    }
}

/// `MAIL FROM:<a@b> SIZE=1` → `a@b`.
fn address(command: &str) -> String {
    let start = command.find('<').map_or(0, |i| i + 1);
    let end = command[start..]
        .find('>')
        .map_or(command.len(), |i| start + i);
    command[start..end].to_owned()
}

async fn send(w: &mut tokio::net::tcp::OwnedWriteHalf, text: &str) -> bool {
    w.write_all(format!("{text}\r\n").as_bytes()).await.is_ok()
}
