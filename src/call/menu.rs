//! The built-in demo menu every call runs until contact flows exist: welcome, then for each
//! key the matching "you pressed ..." prompt, until `#` or silence ends the call.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::collect::{CollectOutcome, CollectSpec};
use super::script::{Action, Script, ScriptEvent};
use crate::media::dtmf::Digit;
use crate::media::prompt::{Prompt, PromptLibrary};

/// The prompts the menu plays, by name under `prompts/<lang>/`.
pub const WELCOME: &str = "welcome";
pub const GOODBYE: &str = "goodbye";

/// `digit-1`, `digit-star`, ... for every key a caller may press besides `#`.
pub fn digit_prompt_name(d: Digit) -> String {
    match d.to_char() {
        '*' => "digit-star".to_string(),
        c => format!("digit-{}", c.to_ascii_lowercase()),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the built-in menu needs prompt {lang}/{name}.wav, which is not in the prompt folder")]
pub struct MissingPrompt {
    pub lang: String,
    pub name: String,
}

/// Everything the menu plays, resolved once at start.
#[derive(Clone)]
pub struct MenuPrompts {
    welcome: Arc<Prompt>,
    goodbye: Arc<Prompt>,
    digits: Vec<(Digit, Arc<Prompt>)>,
}

impl MenuPrompts {
    pub fn resolve(lib: &PromptLibrary, lang: &str) -> Result<MenuPrompts, MissingPrompt> {
        let get = |name: &str| {
            lib.get(lang, name).ok_or_else(|| MissingPrompt {
                lang: lang.into(),
                name: name.into(),
            })
        };
        let mut digits = Vec::new();
        for c in "0123456789*".chars() {
            let d = Digit::from_char(c).expect("keypad character");
            digits.push((d, get(&digit_prompt_name(d))?));
        }
        Ok(MenuPrompts {
            welcome: get(WELCOME)?,
            goodbye: get(GOODBYE)?,
            digits,
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Idle,
    Playing,
    Collecting,
    SayingGoodbye,
    Done,
}

pub struct Menu {
    prompts: MenuPrompts,
    timeout: Duration,
    state: State,
    actions: VecDeque<Action>,
}

impl Menu {
    pub fn new(prompts: MenuPrompts, timeout: Duration) -> Menu {
        Menu {
            prompts,
            timeout,
            state: State::Idle,
            actions: VecDeque::new(),
        }
    }

    fn play(&mut self, prompt: Arc<Prompt>) {
        self.actions.push_back(Action::Play {
            prompts: vec![prompt],
            barge_in: true,
        });
        self.state = State::Playing;
    }

    fn collect(&mut self) {
        self.actions.push_back(Action::Collect(CollectSpec {
            max_digits: 1,
            first_timeout: self.timeout,
            inter_digit_timeout: self.timeout,
            terminator: None,
        }));
        self.state = State::Collecting;
    }

    fn goodbye(&mut self) {
        self.actions.push_back(Action::Play {
            prompts: vec![self.prompts.goodbye.clone()],
            barge_in: false,
        });
        self.state = State::SayingGoodbye;
    }
}

impl Script for Menu {
    fn handle(&mut self, event: ScriptEvent) {
        match (&self.state, event) {
            (State::Idle, ScriptEvent::Started) => self.play(self.prompts.welcome.clone()),
            (State::Playing, ScriptEvent::PlayDone { .. }) => self.collect(),
            (State::Collecting, ScriptEvent::Collected(outcome)) => {
                let key = match outcome {
                    CollectOutcome::Complete(s) | CollectOutcome::Terminated(s) => s.chars().next(),
                    CollectOutcome::Timeout(_) => None,
                };
                let prompt = key.and_then(Digit::from_char).and_then(|d| {
                    self.prompts
                        .digits
                        .iter()
                        .find(|(k, _)| *k == d)
                        .map(|(_, p)| p.clone())
                });
                match prompt {
                    Some(p) => self.play(p),
                    // `#`, A-D or silence: say goodbye.
                    None => self.goodbye(),
                }
            }
            (State::SayingGoodbye, ScriptEvent::PlayDone { .. }) => {
                self.actions.push_back(Action::Hangup);
                self.state = State::Done;
            }
            _ => {}
        }
    }

    fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn library() -> PromptLibrary {
        let mut lib = PromptLibrary::empty().unwrap();
        let tone: Vec<i16> = (0..800).map(|i| (i % 20) as i16 * 100).collect();
        for name in ["welcome", "goodbye"].into_iter().map(String::from).chain(
            "0123456789*"
                .chars()
                .map(|c| digit_prompt_name(Digit::from_char(c).unwrap())),
        ) {
            lib.insert(Prompt::from_pcm("en", &name, &tone, 8000).unwrap());
        }
        lib
    }

    fn played(a: Option<Action>) -> String {
        match a {
            Some(Action::Play { prompts, .. }) => prompts[0].name.clone(),
            other => panic!("expected Play, got {other:?}"),
        }
    }

    #[test]
    fn welcome_then_each_key_then_goodbye_on_pound() {
        let lib = library();
        let mut m = Menu::new(
            MenuPrompts::resolve(&lib, "en").unwrap(),
            Duration::from_secs(10),
        );
        assert!(m.poll_action().is_none(), "nothing before the call starts");
        m.handle(ScriptEvent::Started);
        assert_eq!(played(m.poll_action()), "welcome");
        m.handle(ScriptEvent::PlayDone { interrupted: true });
        assert!(matches!(
            m.poll_action(),
            Some(Action::Collect(CollectSpec { max_digits: 1, .. }))
        ));
        m.handle(ScriptEvent::Collected(CollectOutcome::Complete("7".into())));
        assert_eq!(played(m.poll_action()), "digit-7");
        m.handle(ScriptEvent::PlayDone { interrupted: false });
        assert!(matches!(m.poll_action(), Some(Action::Collect(_))));
        m.handle(ScriptEvent::Collected(CollectOutcome::Complete("*".into())));
        assert_eq!(played(m.poll_action()), "digit-star");
        m.handle(ScriptEvent::PlayDone { interrupted: false });
        m.poll_action();
        m.handle(ScriptEvent::Collected(CollectOutcome::Complete("#".into())));
        assert_eq!(played(m.poll_action()), "goodbye");
        m.handle(ScriptEvent::PlayDone { interrupted: false });
        assert!(matches!(m.poll_action(), Some(Action::Hangup)));
    }

    #[test]
    fn silence_says_goodbye_and_hangs_up() {
        let lib = library();
        let mut m = Menu::new(
            MenuPrompts::resolve(&lib, "en").unwrap(),
            Duration::from_secs(10),
        );
        m.handle(ScriptEvent::Started);
        m.poll_action();
        m.handle(ScriptEvent::PlayDone { interrupted: false });
        m.poll_action();
        m.handle(ScriptEvent::Collected(CollectOutcome::Timeout(
            String::new(),
        )));
        assert_eq!(played(m.poll_action()), "goodbye");
        m.handle(ScriptEvent::PlayDone { interrupted: false });
        assert!(matches!(m.poll_action(), Some(Action::Hangup)));
    }

    #[test]
    fn a_missing_prompt_is_named() {
        let lib = PromptLibrary::empty().unwrap();
        let err = MenuPrompts::resolve(&lib, "ja").err().unwrap().to_string();
        assert!(err.contains("ja/") && err.contains(".wav"), "{err}");
    }
}
