"""Chat examples (``{"messages": [{"role", "content"}, ...]}``) rendered with a Jinja chat
template, and the token span of every assistant response (the only tokens SFT puts loss on).

Templates are user code, so they run in Jinja's ``ImmutableSandboxedEnvironment`` (no
attribute access outside the sandbox, no mutation of the messages), set up as Hugging Face
``apply_chat_template`` does it: ``trim_blocks``, ``lstrip_blocks``, the ``loopcontrols``
extension, a ``raise_exception(message)`` function, a ``tojson`` filter, and the variables
``messages``, ``add_generation_prompt`` and ``<role>_token`` for each of the tokenizer's
special tokens (``bos_token``, ``eos_token``, ...).

Finding a response: render ``messages[:i]`` with ``add_generation_prompt=True`` (the prompt
the model will see at inference) and ``messages[:i + 1]``; the second must extend the first,
and the extra text is assistant message i's response (its end-of-turn token included). The
full conversation is cut at those character offsets into prompt and response segments, each
segment is tokenized with ``tokenizer.encode_template`` (special-token strings the template
wrote become their ids) and the ids are concatenated, so a response's tokens are exactly the
tokens of its text. Tokenizing per segment can differ from tokenizing the whole rendering at
a boundary (a BPE merge across it); it never moves a token between prompt and response.
Message contents pass through ``encode_template`` too, so a special-token string typed in a
message becomes that token, as with Hugging Face's ``apply_chat_template(tokenize=True)``.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from lmforge.errors import ConfigError
from lmforge.finetune.examples import BadExample

# lmforge's own tokenizers have no chat template: this one marks each turn with a plain-text
# role header and ends an assistant turn with the tokenizer's eos token, so a fine-tuned model
# learns to stop after its answer. Rendered:  <s><|user|>\nHi\n<|assistant|>\nHello</s>
DEFAULT_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% else %}{{ '\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)  # (newlines as Jinja string escapes: trim_blocks drops a literal newline after a block tag)
ROLES = ("system", "user", "assistant")


def _generation_extension() -> type:
    """``{% generation %}...{% endgeneration %}`` (which some published templates put around
    assistant text for HF's ``return_assistant_tokens_mask``) rendered as its body: the
    responses are found by rendering prefixes here, so the markers need no meaning."""
    from jinja2.ext import Extension

    class GenerationTags(Extension):
        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            from jinja2 import nodes

            return nodes.Scope(body, lineno=lineno)

    return GenerationTags


class TemplateFailure(Exception):
    """``raise_exception(message)`` called by a template."""


def _raise_exception(message: str) -> None:
    raise TemplateFailure(message)


def _tojson(value: Any, indent: Optional[int] = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def resolve_template(option: str, tokenizer: Any, key: str = "task.options.chat_template") -> tuple[str, str]:
    """(template source, where it came from) for the ``chat_template`` option: "" = the
    tokenizer's own, or the built-in default when it has none; "default" = the built-in one;
    a path to a file = that file; anything else = the template text itself."""
    if option in ("", "default"):
        own = getattr(tokenizer, "chat_template", None) if option == "" else None
        if own:
            if not isinstance(own, str):
                raise ConfigError(f"config key '{key}': the tokenizer's chat template is not one string "
                                  f"(got {type(own).__name__}); pass a template's text or file")
            return own, "the tokenizer's chat template"
        return DEFAULT_CHAT_TEMPLATE, "lmforge's built-in chat template"
    if "{" not in option and "\n" not in option:
        path = Path(option)
        if not path.is_file():
            raise ConfigError(f"config key '{key}': {option!r} is neither a template (it has no '{{') nor a "
                              "file; pass the Jinja text, a path to it, or \"\" for the tokenizer's")
        return path.read_text(encoding="utf-8"), f"chat template {option}"
    return option, f"the chat template of {key}"


class ChatTemplate:
    """A compiled chat template for one tokenizer. A syntax error is one ConfigError line;
    an error while rendering an example (``raise_exception``, an undefined name, a type error
    inside the template) is a `BadExample` ("template_error") for the example's line."""

    def __init__(self, source: str, tokenizer: Any, origin: str = "the chat template",
                 key: str = "task.options.chat_template") -> None:
        import jinja2
        import jinja2.ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        self.origin = origin
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=[jinja2.ext.loopcontrols, _generation_extension()])
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        try:
            self.template = env.from_string(source)
        except jinja2.TemplateSyntaxError as err:
            raise ConfigError(f"{origin} ({key}) has a Jinja syntax error at line {err.lineno}: {err.message}; "
                              "fix the template") from err
        self.tokens = {f"{role}_token": token for role, token in tokenizer.special_tokens.items()}
        if source == DEFAULT_CHAT_TEMPLATE and "eos_token" not in self.tokens:
            raise ConfigError(f"config key '{key}': lmforge's built-in chat template ends assistant turns with an "
                              "eos token, which this tokenizer lacks; pass a chat template")
        self.tokens.setdefault("bos_token", "")
        self.tokens.setdefault("eos_token", "")

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
        try:
            return self.template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                        **self.tokens)
        except TemplateFailure as err:
            raise BadExample("template_error", f"{self.origin} refused the conversation: {err}") from err
        except Exception as err:  # a template is user code: any error in it is the template's
            raise BadExample("template_error", f"{self.origin} failed on this conversation "
                                               f"({type(err).__name__}: {err}); fix the template or the "
                                               "example") from err


def check_messages(messages: Any, for_training: bool = True) -> list[dict[str, str]]:
    """The messages of one example checked: a list of {"role", "content"} with string values,
    an optional system message first, then user and assistant alternating from user, ending
    with assistant when training (the last response is what is learnt). BadExample otherwise."""
    if not isinstance(messages, list) or not messages:
        raise BadExample("wrong_type", "field 'messages' must be a non-empty list of {\"role\", \"content\"} objects")
    for index, message in enumerate(messages, 1):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) \
                or not isinstance(message.get("content"), str):
            raise BadExample("wrong_type", f"message {index} must be an object with string 'role' and 'content'")
        if message["role"] not in ROLES:
            raise BadExample("role_order", f"message {index} has role {message['role']!r}; roles are "
                                           f"{', '.join(ROLES)}")
    roles = [m["role"] for m in messages]
    body = roles[1:] if roles[0] == "system" else roles
    for index, role in enumerate(body):
        expected = "user" if index % 2 == 0 else "assistant"
        if role != expected:
            position = index + 1 + (len(roles) - len(body))
            raise BadExample("role_order", f"message {position} is {role!r} where {expected!r} was expected: "
                                           "roles must be an optional system message, then user and assistant "
                                           f"alternating (got {' -> '.join(roles)})")
    if for_training and (not body or body[-1] != "assistant"):
        raise BadExample("role_order", f"the conversation must end with an assistant message to train on "
                                       f"(got {' -> '.join(roles)})")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def response_segments(template: ChatTemplate, messages: list[dict[str, str]]) -> list[tuple[str, bool]]:
    """The rendered conversation cut into (text, is_response) segments (see the module
    docstring); BadExample("template_error") when the template's renderings do not extend
    one another, so the responses cannot be located."""
    full = template.render(messages)
    segments: list[tuple[str, bool]] = []
    cursor = 0
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = template.render(messages[:index], add_generation_prompt=True)
        upto = template.render(messages[:index + 1])
        if not upto.startswith(prompt) or not full.startswith(upto) or len(prompt) < cursor:
            raise BadExample("template_error", f"{template.origin} does not render assistant message {index + 1} "
                                               "as a continuation of the prompt it renders with "
                                               "add_generation_prompt, so the response tokens cannot be found; "
                                               "use a template whose renderings of a conversation's prefixes "
                                               "extend one another")
        if len(prompt) > cursor:
            segments.append((full[cursor:len(prompt)], False))
        segments.append((full[len(prompt):len(upto)], True))
        cursor = len(upto)
    if cursor < len(full):
        segments.append((full[cursor:], False))
    return segments


def tokenize_segments(tokenizer: Any, segments: list[tuple[str, bool]]) -> tuple[list[int], list[bool]]:
    """(ids, is_response per id) of the segments, each tokenized with ``encode_template``."""
    ids: list[int] = []
    response: list[bool] = []
    for text, is_response in segments:
        piece = tokenizer.encode_template(text)
        ids.extend(piece)
        response.extend([is_response] * len(piece))
    return ids, response
