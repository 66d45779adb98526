//! `hotslot watch` on a terminal (a pseudo-terminal here), as a person at
//! the keyboard uses it: lines typed while a call runs are all answered.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use crate::common::plugin_path;

const DEADLINE: Duration = Duration::from_secs(30);

/// A pseudo-terminal: the side the test types into and reads, and the side
/// the host gets as its terminal.
fn pty() -> (File, OwnedFd) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two descriptors, which we then own.
    let made = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(made, 0, "openpty");
    // SAFETY: both descriptors are fresh and ours alone.
    unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

#[test]
fn lines_typed_during_a_long_call_are_all_answered() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(plugin_path("rogue"), dir.path().join("rogue.wasm")).unwrap();
    std::fs::copy(plugin_path("greeter_a"), dir.path().join("greeter_a.wasm")).unwrap();
    let (mut terminal, host_side) = pty();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hotslot"))
        .arg("watch")
        .arg(dir.path())
        .args(["--timeout-ms", "1500"])
        .env("HOTSLOT_LOG", "warn")
        .stdin(Stdio::from(host_side.try_clone().unwrap()))
        .stdout(Stdio::from(host_side.try_clone().unwrap()))
        .stderr(Stdio::from(host_side))
        .spawn()
        .unwrap();
    let mut reader = terminal.try_clone().unwrap();
    let (sender, screen) = channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n @ 1..) = reader.read(&mut buffer) {
            if sender.send(buffer[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    let mut seen = String::new();
    let wait_for = |text: &str, seen: &mut String| {
        let deadline = Instant::now() + DEADLINE;
        while !seen.contains(text) {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("never saw {text:?} on the screen:\n{seen}"));
            if let Ok(bytes) = screen.recv_timeout(left) {
                seen.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    };
    wait_for("hotslot> ", &mut seen);
    // One call that runs until its deadline, and three lines typed while it
    // runs, each the moment the one before is sent.
    terminal
        .write_all(b"demo:rogue/misbehave#spin()\r")
        .unwrap();
    for name in ["one", "two", "three"] {
        write!(terminal, "demo:greeter/greet#hello(\"{name}\")\r").unwrap();
    }
    terminal.flush().unwrap();
    for expected in [
        "deadline",
        "a: hello, one",
        "a: hello, two",
        "a: hello, three",
    ] {
        wait_for(expected, &mut seen);
    }
    terminal.write_all(b"quit\r").unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < DEADLINE, "quit did not end the host");
        std::thread::yield_now();
    }
}
