//! Chat templates: the Jinja template a GGUF file carries, rendered the way
//! Hugging Face's `apply_chat_template` does (`messages`,
//! `add_generation_prompt`, `bos_token`, `eos_token`, `raise_exception`,
//! Python's string methods), so a prompt is laid out exactly as the model
//! was trained on.

use minijinja::{Environment, Error, ErrorKind, context};
use serde::Serialize;

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("the model's chat template does not compile: {0}")]
    Compile(String),
    #[error("the model's chat template refused the conversation: {0}")]
    Render(String),
}

impl ChatTemplate {
    pub fn new(source: &str, bos: Option<&str>, eos: Option<&str>) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<String, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_template_owned("chat", source.to_owned())
            .map_err(|e| TemplateError::Compile(e.to_string()))?;
        Ok(Self {
            env,
            bos: bos.unwrap_or_default().to_owned(),
            eos: eos.unwrap_or_default().to_owned(),
        })
    }

    /// The prompt for `messages`, ending where the assistant's answer
    /// starts.
    pub fn render(&self, messages: &[Message]) -> Result<String, TemplateError> {
        let template = self
            .env
            .get_template("chat")
            .map_err(|e| TemplateError::Compile(e.to_string()))?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => true,
                bos_token => self.bos,
                eos_token => self.eos,
            })
            .map_err(|e| TemplateError::Render(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }

    #[test]
    fn renders_chatml_with_python_string_methods_and_refuses_by_raise_exception() {
        let source = "{% for m in messages %}{% if m.role == 'tool' %}{{ raise_exception('no tools') }}{% endif %}<|im_start|>{{ m.role }}\n{{ m.content.strip() }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
        let template = ChatTemplate::new(source, None, Some("<|im_end|>")).unwrap();
        let prompt = template
            .render(&[message("system", "Be brief."), message("user", "  Hi  ")])
            .unwrap();
        assert_eq!(
            prompt,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let refused = template.render(&[message("tool", "x")]).unwrap_err();
        assert!(refused.to_string().contains("no tools"), "{refused}");
        assert!(ChatTemplate::new("{% if %}", None, None).is_err());
    }
}
