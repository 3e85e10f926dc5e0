"""Chat templates (lmforge.finetune.chat) and the sft task's chat examples: sandboxed Jinja,
role order, template errors, and loss on the assistant responses only."""

from __future__ import annotations

import json

import pytest

from lmforge.config import ModelConfig, TokenizerConfig, TrainConfig
from lmforge.errors import ConfigError, DataError
from lmforge.finetune.chat import (DEFAULT_CHAT_TEMPLATE, ChatTemplate, check_messages, resolve_template,
                                   response_segments)
from lmforge.finetune.examples import BadExample
from lmforge.models.presets import resolve_model_config
from lmforge.tokenize import train_tokenizer
from lmforge.train.parallel import World
from lmforge.train.tasks import TaskContext, build_task

TEXTS = ["hello there, how are you today?", "I am fine, thank you.", "what is two plus two?", "four.",
         "be brief and kind", "the cat sat on the mat"] * 4


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, TokenizerConfig(kind="byte_bpe", vocab_size=300, min_frequency=1))


def chat(*turns):
    return [{"role": role, "content": content} for role, content in turns]


def write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return str(path)


def sft_data(tok, tmp_path, records, **options):
    path = write_jsonl(tmp_path / "chat.jsonl", records)
    cfg = resolve_model_config(ModelConfig(family="llama", vocab_size=tok.vocab_size, max_seq_len=128, dim=32,
                                           num_layers=1, num_heads=2))
    task = build_task("sft", {"train_path": path, "val_path": path, **options}, TaskContext(tok, cfg))
    return task, task.open_data(TrainConfig(seq_len=128, batch_size=1), World())


def test_default_template_renders_roles_and_ends_assistant_turns_with_eos(tok):
    template = ChatTemplate(DEFAULT_CHAT_TEMPLATE, tok)
    messages = chat(("system", "be brief"), ("user", "hi"), ("assistant", "hello"))
    assert template.render(messages) == "<s><|system|>\nbe brief\n<|user|>\nhi\n<|assistant|>\nhello</s>"
    assert template.render(messages[:2], add_generation_prompt=True) == \
        "<s><|system|>\nbe brief\n<|user|>\nhi\n<|assistant|>\n"


def test_response_segments_are_the_assistant_texts_with_their_eos(tok):
    template = ChatTemplate(DEFAULT_CHAT_TEMPLATE, tok)
    messages = chat(("user", "hi"), ("assistant", "hello"), ("user", "two plus two?"), ("assistant", "four."))
    assert response_segments(template, messages) == [
        ("<s><|user|>\nhi\n<|assistant|>\n", False), ("hello</s>", True),
        ("<|user|>\ntwo plus two?\n<|assistant|>\n", False), ("four.</s>", True)]


def test_chat_example_loss_is_on_the_assistant_tokens_only(tok, tmp_path):
    messages = chat(("user", "hi"), ("assistant", "hello"), ("user", "two plus two?"), ("assistant", "four."))
    _, data = sft_data(tok, tmp_path, [{"messages": messages}])
    row = data.train_rows[0]
    # by hand: the segments tokenized one by one; targets are ids[1:], -100 where the token is not a response's
    pieces = [(tok.encode_template("<s><|user|>\nhi\n<|assistant|>\n"), False),
              (tok.encode("hello") + [tok.eos_id], True),
              (tok.encode("<|user|>\ntwo plus two?\n<|assistant|>\n"), False),
              (tok.encode("four.") + [tok.eos_id], True)]
    ids = [i for piece, _ in pieces for i in piece]
    scored = [s for piece, s in pieces for _ in piece]
    assert row["inputs"] == ids[:-1]
    assert row["targets"] == [i if s else -100 for i, s in zip(ids[1:], scored[1:])]
    assert sum(t != -100 for t in row["targets"]) == len(tok.encode("hello")) + len(tok.encode("four.")) + 2
    assert tok.decode([t for t in row["targets"] if t != -100], skip_special=False) == "hello</s>four.</s>"


@pytest.mark.parametrize("messages, message", [
    (chat(("user", "a"), ("user", "b"), ("assistant", "c")), "message 2 is 'user' where 'assistant' was expected"),
    (chat(("assistant", "a")), "message 1 is 'assistant' where 'user' was expected"),
    (chat(("user", "a"), ("system", "b"), ("assistant", "c")), "message 2 is 'system' where 'assistant'"),
    (chat(("system", "s"), ("user", "a")), "must end with an assistant message"),
    (chat(("user", "a"), ("tool", "b")), "message 2 has role 'tool'"),
    ([{"role": "user"}], "message 1 must be an object with string 'role' and 'content'"),
    ([], "non-empty list"),
])
def test_roles_out_of_order_are_one_clear_reason(messages, message):
    with pytest.raises(BadExample) as err:
        check_messages(messages)
    assert message in err.value.message


def test_role_order_error_names_file_and_line_or_is_counted_when_skipping(tok, tmp_path):
    good = {"messages": chat(("user", "hi"), ("assistant", "hello"))}
    bad = {"messages": chat(("user", "hi"), ("user", "again"), ("assistant", "hello"))}
    with pytest.raises(DataError, match=r"chat\.jsonl:2: message 2 is 'user' where 'assistant' was expected.*"
                                        r"on_bad_example: skip"):
        sft_data(tok, tmp_path, [good, bad, good])
    _, data = sft_data(tok, tmp_path, [good, bad, good, "{not json", {"text": "x"}], on_bad_example="skip")
    assert len(data.train_rows) == 2
    assert dict(data.skips["train"].counts) == {"role_order": 1, "bad_json": 1, "missing_field": 1}
    assert "train skipped 3 (1 bad_json, 1 missing_field, 1 role_order)" in data.describe()


def test_template_syntax_error_is_one_config_error_line(tok, tmp_path):
    with pytest.raises(ConfigError, match=r"has a Jinja syntax error at line 2: .*fix the template") as err:
        sft_data(tok, tmp_path, [{"messages": chat(("user", "hi"), ("assistant", "yo"))}],
                 chat_template="{% for m in messages %}\n{{ m.content }\n{% endfor %}")
    assert "\n" not in str(err.value)


def test_template_raise_exception_is_a_data_error_at_the_line_or_a_counted_skip(tok, tmp_path):
    template = ("{% for m in messages %}{% if m.content == 'forbidden' %}{{ raise_exception('no forbidden "
                "words') }}{% endif %}{{ m.role + ': ' + m.content + '\\n' }}{% endfor %}")
    good = {"messages": chat(("user", "hi"), ("assistant", "yo"))}
    bad = {"messages": chat(("user", "forbidden"), ("assistant", "yo"))}
    with pytest.raises(DataError, match=r"chat\.jsonl:2: the chat template of task.options.chat_template refused "
                                        r"the conversation: no forbidden words"):
        sft_data(tok, tmp_path, [good, bad], chat_template=template)
    _, data = sft_data(tok, tmp_path, [good, bad], chat_template=template, on_bad_example="skip")
    assert dict(data.skips["train"].counts) == {"template_error": 1}
    # this template has no generation prompt: everything it adds for the assistant message,
    # role header included, is the response
    assert tok.decode([t for t in data.train_rows[0]["targets"] if t != -100]) == "assistant: yo\n"


def test_template_runs_in_a_sandbox(tok):
    template = ChatTemplate("{{ ''.__class__.__mro__[1].__subclasses__() }}", tok)
    with pytest.raises(BadExample) as err:
        template.render(chat(("user", "a")))
    assert err.value.reason == "template_error" and "SecurityError" in err.value.message


def test_template_whose_prefixes_do_not_extend_cannot_locate_responses(tok):
    # renders a footer only without the generation prompt: the prompt is not a prefix of the answer
    template = ChatTemplate("{% for m in messages %}{{ m.content }}{% endfor %}"
                            "{% if add_generation_prompt %}{{ '>>' }}{% endif %}", tok)
    with pytest.raises(BadExample, match="does not render assistant message 2 as a continuation"):
        response_segments(template, chat(("user", "a"), ("assistant", "b")))


def test_template_resolution(tok, tmp_path):
    assert resolve_template("", tok) == (DEFAULT_CHAT_TEMPLATE, "lmforge's built-in chat template")

    class WithTemplate:
        chat_template = "{{ messages[0].content }}"

    assert resolve_template("", WithTemplate()) == ("{{ messages[0].content }}", "the tokenizer's chat template")
    assert resolve_template("default", WithTemplate())[0] == DEFAULT_CHAT_TEMPLATE
    file = tmp_path / "t.jinja"
    file.write_text("{{ bos_token }}", encoding="utf-8")
    assert resolve_template(str(file), tok)[0] == "{{ bos_token }}"
    with pytest.raises(ConfigError, match="neither a template"):
        resolve_template(str(tmp_path / "missing.jinja"), tok)


def test_a_published_style_template_with_generation_tags_and_loop_variables(tok, tmp_path):
    # the form of Zephyr/ChatML-style templates: role headers, eos after every turn, loop.last,
    # {% generation %} markers around assistant text and a trailing generation prompt
    template = ("{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' }}"
                "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + eos_token }}"
                "{% endgeneration %}{% else %}{{ message['content'] + eos_token }}{% endif %}"
                "{% if not loop.last %}{{ '\\n' }}{% endif %}{% endfor %}"
                "{% if add_generation_prompt %}{{ '\\n<|assistant|>\\n' }}{% endif %}")
    messages = chat(("system", "be brief"), ("user", "hi"), ("assistant", "hello"))
    compiled = ChatTemplate(template, tok)
    assert compiled.render(messages) == "<|system|>\nbe brief</s>\n<|user|>\nhi</s>\n<|assistant|>\nhello</s>"
    # the "\n" before the header belongs to the prompt: in the full rendering it is not last
    assert response_segments(compiled, messages)[-1] == ("hello</s>", True)
    _, data = sft_data(tok, tmp_path, [{"messages": messages}], chat_template=template)
    assert tok.decode([t for t in data.train_rows[0]["targets"] if t != -100], skip_special=False) == "hello</s>"
