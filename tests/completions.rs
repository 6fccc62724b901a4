//! `promptgate completions SHELL`: a script the shell takes, naming every command and flag.

use assert_cmd::Command;

fn script(shell: &str) -> String {
    let output = Command::cargo_bin("promptgate")
        .expect("binary")
        .args(["completions", shell])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0), "{shell}");
    String::from_utf8(output.stdout).expect("UTF-8")
}

#[test]
fn every_shell_gets_the_commands_and_flags() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let text = script(shell);
        for word in ["gate", "baseline", "max-calls", "conservative-ci", "completions"] {
            assert!(text.contains(word), "{shell} lacks {word}");
        }
    }
}

#[test]
fn bash_takes_the_script_and_completes_promptgate_with_it() {
    let path = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(path.path(), script("bash")).expect("write");
    let output = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(". '{}' && complete -p promptgate", path.path().display()))
        .output()
        .expect("bash");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("promptgate"));
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    Command::cargo_bin("promptgate")
        .expect("binary")
        .args(["completions", "tcsh"])
        .assert()
        .code(2);
}
