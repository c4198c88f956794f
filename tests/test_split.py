"""Splitter: sentence ends, size bound, whole-sentence overlap, headings, Q/A rows, streaming."""

from __future__ import annotations

import doctest
import random
import re
from collections.abc import Iterator

import pytest

from kbqa.config import SplitConfig
from kbqa.ingest import split
from kbqa.ingest.split import split_documents, split_text
from kbqa.types import Document

SENTENCES = [
    "员工入职满一年后，每年享有五天带薪年假。",
    "年假须提前三个工作日在系统中提交申请！",
    "未休完的年假可以顺延至次年第一季度；",
    "逾期未休的，视为自动放弃。",
    "部门经理应合理安排工作，保证员工能够休假。",
    "病假需要提供二级以上医院出具的证明……",
    "人事部将在每月五日前核对上月的考勤记录。",
    "有疑问吗？",
    "请联系人事部小王，分机号码是8021。",
]
TEXT = "".join(SENTENCES[:4]) + "\n\n" + "".join(SENTENCES[4:7]) + "\n" + "".join(SENTENCES[7:])


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def sentences_of(chunk: str) -> list[str]:
    """The known sentences a chunk is made of; fails if the chunk holds a partial one."""
    rest, found = squash(chunk), []
    while rest:
        match = next((s for s in SENTENCES if rest.startswith(s)), None)
        assert match is not None, f"chunk does not start with a whole sentence: {rest!r}"
        found.append(match)
        rest = rest[len(match) :]
    return found


@pytest.mark.parametrize("size,overlap", [(30, 0), (45, 20), (60, 25), (100, 40), (400, 60)])
def test_chunks_are_whole_sentences_within_size(size: int, overlap: int) -> None:
    chunks = split_text(TEXT, SplitConfig(chunk_size=size, chunk_overlap=overlap))
    assert chunks
    for chunk in chunks:
        assert len(chunk) <= size
        assert chunk == chunk.strip()
        sentences_of(chunk)
    # nothing lost: every sentence appears, in order
    seen = [s for c in chunks for s in sentences_of(c)]
    assert [s for i, s in enumerate(seen) if s not in seen[:i]] == SENTENCES


def test_without_overlap_chunks_concatenate_to_the_text() -> None:
    chunks = split_text(TEXT, SplitConfig(chunk_size=50, chunk_overlap=0))
    assert squash("".join(chunks)) == squash(TEXT)
    assert len(chunks) > 2


def test_packs_greedily() -> None:
    chunks = split_text(TEXT, SplitConfig(chunk_size=50, chunk_overlap=0))
    for chunk, following in zip(chunks, chunks[1:], strict=False):
        start = TEXT.index(chunk)
        end = TEXT.index(following) + len(sentences_of(following)[0])
        assert end - start > 50, "the next sentence would have fitted"


def test_paragraph_breaks_are_kept_inside_a_chunk() -> None:
    (chunk,) = split_text(TEXT, SplitConfig(chunk_size=400, chunk_overlap=60))
    assert chunk == TEXT


def test_overlap_is_the_longest_run_of_trailing_whole_sentences() -> None:
    sentences = [f"第{n}句话讲了一件事。" for n in range(1, 10)]  # 9 characters each
    chunks = split_text("".join(sentences), SplitConfig(chunk_size=40, chunk_overlap=20))
    # 4 sentences fill 36 of 40; 2 trailing sentences (18 <= 20) open the next chunk
    assert chunks[0] == "".join(sentences[0:4])
    assert chunks[1] == "".join(sentences[2:6])
    assert chunks[2] == "".join(sentences[4:8])
    assert chunks[3] == "".join(sentences[6:9])
    assert len(chunks) == 4


def test_no_overlap_when_the_last_sentence_is_longer_than_chunk_overlap() -> None:
    text = "短句一。" + "这是一句比重叠长度还要长得多的句子。" + "下一句话在这里。"
    chunks = split_text(text, SplitConfig(chunk_size=24, chunk_overlap=5))
    assert chunks == ["短句一。这是一句比重叠长度还要长得多的句子。", "下一句话在这里。"]


def test_overlap_gives_way_to_the_size_bound() -> None:
    sentences = ["甲乙丙丁。", "戊己庚辛。", "一句很长很长很长很长很长的话。"]
    chunks = split_text("".join(sentences), SplitConfig(chunk_size=16, chunk_overlap=10))
    # "戊己庚辛。" would fit the overlap but not beside the 15-character sentence
    assert chunks == ["甲乙丙丁。戊己庚辛。", "一句很长很长很长很长很长的话。"]


def test_an_over_long_sentence_is_split_at_commas() -> None:
    sentence = (
        "根据公司规定，员工在工作日加班的，按照小时工资的一点五倍支付加班费，"
        "在休息日加班又不能安排补休的，按照两倍支付，在法定节假日加班的，按照三倍支付。"
    )
    chunks = split_text(
        sentence + "其他情况另行规定。", SplitConfig(chunk_size=40, chunk_overlap=10)
    )
    assert len(chunks) > 1
    assert squash("".join(chunks)) == squash(sentence + "其他情况另行规定。")
    for chunk in chunks:
        assert len(chunk) <= 40
        assert chunk[-1] in "，。", chunk


def test_an_unbreakable_run_is_cut_hard_at_chunk_size() -> None:
    url = "https://example.com/" + "a" * 95
    chunks = split_text(f"下载地址是{url}", SplitConfig(chunk_size=30, chunk_overlap=5))
    assert all(len(c) <= 30 for c in chunks)
    assert "".join(chunks) == f"下载地址是{url}"


def test_closing_quotes_and_brackets_stay_with_their_sentence() -> None:
    text = "他说：「请在周五前提交。」我们照做了（已确认。）后来“一切顺利！”结束。"
    chunks = split_text(text, SplitConfig(chunk_size=14, chunk_overlap=0))
    assert chunks == [
        "他说：「请在周五前提交。」",
        "我们照做了（已确认。）",
        "后来“一切顺利！”结束。",
    ]


def test_ascii_sentences() -> None:
    text = (
        "The leave policy applies to all staff. Version 1.2 replaces v1.0 entirely! "
        "Does it cover contractors? Yes; see section 3.4 for details."
    )
    chunks = split_text(text, SplitConfig(chunk_size=40, chunk_overlap=0))
    assert chunks == [
        "The leave policy applies to all staff.",
        "Version 1.2 replaces v1.0 entirely!",
        "Does it cover contractors? Yes;",
        "see section 3.4 for details.",
    ]


def test_mixed_chinese_and_english() -> None:
    text = (
        "请使用 VPN 连接内网。Connect via vpn.example.com first. 然后打开OA系统!再提交申请?好的。"
    )
    chunks = split_text(text, SplitConfig(chunk_size=40, chunk_overlap=0))
    assert chunks == [
        "请使用 VPN 连接内网。",
        "Connect via vpn.example.com first.",
        "然后打开OA系统!再提交申请?好的。",
    ]
    # half-width ! and ? before a Chinese character end a sentence too
    small = split_text(text, SplitConfig(chunk_size=10, chunk_overlap=0))
    assert small[-2:] == ["然后打开OA系统!", "再提交申请?好的。"]


def test_a_long_english_sentence_is_cut_between_words() -> None:
    text = "Employees who travel abroad must book flights through the approved agency only."
    chunks = split_text(text, SplitConfig(chunk_size=30, chunk_overlap=0))
    assert " ".join(chunks) == text
    assert all(len(c) <= 30 for c in chunks)


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t\n", "\u3000\u3000\n \n"])
def test_blank_documents_give_no_chunk(text: str) -> None:
    assert split_text(text, SplitConfig()) == []
    assert list(split_documents([Document(text, "blank.txt")], SplitConfig())) == []
    assert list(split_documents([Document(text, "blank.md")], SplitConfig())) == []


HANDBOOK = """# 员工手册

公司全体员工适用本手册。

## 休假制度

### 年假

员工入职满一年后，每年享有五天带薪年假。年假须提前三个工作日申请。未休完的年假可以顺延至次年第一季度。逾期未休的，视为自动放弃。

### 病假

病假需要提供医院证明。

## 报销流程

差旅费用须在出差结束后十日内报销。
"""


def test_headings_are_carried_into_every_chunk_of_their_section() -> None:
    doc = Document(HANDBOOK, "ingest/handbook.md", {"title": "手册"})
    chunks = list(split_documents([doc], SplitConfig(chunk_size=40, chunk_overlap=10)))
    by_path: dict[tuple[str, ...], list[str]] = {}
    for chunk in chunks:
        path = chunk.metadata["headings"]
        by_path.setdefault(tuple(path), []).append(chunk.text)
        assert chunk.metadata["title"] == "手册"
        assert chunk.embed_text == " > ".join(path) + "\n" + chunk.text
        assert "#" not in chunk.text
        assert len(chunk.text) <= 40
    assert list(by_path) == [
        ("员工手册",),
        ("员工手册", "休假制度", "年假"),
        ("员工手册", "休假制度", "病假"),
        ("员工手册", "报销流程"),
    ]
    assert len(by_path["员工手册", "休假制度", "年假"]) > 1  # several chunks, each with the path
    # sections are never merged, even when both would fit in one chunk
    assert by_path["员工手册", "休假制度", "病假"] == ["病假需要提供医院证明。"]
    assert by_path["员工手册", "报销流程"] == ["差旅费用须在出差结束后十日内报销。"]


def test_text_before_the_first_heading_has_no_headings_key() -> None:
    doc = Document("前言：本文件每年修订。\n# 第一章\n正文内容。", "a.markdown")
    chunks = list(split_documents([doc], SplitConfig()))
    assert "headings" not in chunks[0].metadata
    assert chunks[0].embed_text == chunks[0].text == "前言：本文件每年修订。"
    assert chunks[1].metadata["headings"] == ["第一章"]


def test_docx_and_flagged_documents_are_markdown_but_plain_text_is_not() -> None:
    text = "# 考勤\n每天九点上班。"
    for doc in (Document(text, "规定.DOCX"), Document(text, "x.html", {"markdown": True})):
        (chunk,) = split_documents([doc], SplitConfig())
        assert chunk.metadata["headings"] == ["考勤"]
        assert chunk.text == "每天九点上班。"
    (plain,) = split_documents([Document(text, "notes.txt")], SplitConfig())
    assert plain.text == text
    assert "headings" not in plain.metadata


def test_hash_lines_in_code_blocks_are_not_headings() -> None:
    text = "# 部署\n运行脚本：\n```\n# 安装依赖\npip install kbqa\n```\n完成。"
    (chunk,) = split_documents([Document(text, "ops.md")], SplitConfig())
    assert chunk.metadata["headings"] == ["部署"]
    assert "# 安装依赖" in chunk.text


def test_heading_path_continues_across_segments_of_one_file() -> None:
    segments = [
        Document("# 手册\n## 年假\n第一段。", "big.md", {"segment": 0}),
        Document("第二段接着写年假。", "big.md", {"segment": 1}),
        Document("另一个文件的正文。", "other.md"),
    ]
    chunks = list(split_documents(segments, SplitConfig()))
    assert [c.metadata.get("headings") for c in chunks] == [
        ["手册", "年假"],
        ["手册", "年假"],
        None,
    ]
    assert chunks[1].metadata["segment"] == 1


def test_a_qa_row_is_one_chunk_whatever_its_length() -> None:
    answer = "请按照以下步骤操作。" * 300  # 3000 characters, far above chunk_size
    text = f"问题：如何申请年假？\n答案：{answer}"
    meta = {"question": "如何申请年假？", "answer": answer, "row": 7}
    (chunk,) = split_documents([Document(text, "faq.md", meta)], SplitConfig(100, 10))
    assert chunk.text == text
    assert chunk.embed_text == text
    assert chunk.metadata == meta
    assert chunk.metadata is not meta


def test_chunk_metadata_is_a_copy() -> None:
    doc = Document("第一句。" * 200, "a.txt", {"page": 3})
    chunks = list(split_documents([doc], SplitConfig(chunk_size=50, chunk_overlap=0)))
    chunks[0].metadata["page"] = 99
    assert doc.metadata == {"page": 3}
    assert all(c.metadata == {"page": 3} for c in chunks[1:])


def test_documents_are_consumed_lazily() -> None:
    consumed: list[int] = []

    def segments() -> Iterator[Document]:
        for n in range(1000):
            consumed.append(n)
            yield Document(f"第{n}段的内容。" * 20, "big.txt", {"segment": n})

    chunks = split_documents(segments(), SplitConfig(chunk_size=100, chunk_overlap=0))
    assert consumed == []  # nothing read before the first chunk is asked for
    first = next(chunks)
    assert first.metadata["segment"] == 0
    assert consumed == [0]
    for chunk in chunks:
        if chunk.metadata["segment"] == 2:
            break
    assert consumed == [0, 1, 2]


def test_docstring_example() -> None:
    assert doctest.testmod(split).failed == 0


def test_random_text_keeps_the_invariants() -> None:
    rng = random.Random(7)
    alphabet = [
        *"年假申请员工规定公司",
        *"。！？；…，、「」“”）",
        " ",
        "\n",
        "\n\n",
        ". ",
        "ab",
        "1.0",
        "#",
    ]
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200)))
        size = rng.randint(1, 50)
        config = SplitConfig(chunk_size=size, chunk_overlap=rng.randint(0, size - 1))
        chunks = split_text(text, config)
        assert all(c and c == c.strip() and len(c) <= size for c in chunks), (text, config)
        if config.chunk_overlap == 0:
            assert squash("".join(chunks)) == squash(text), (text, config)


def test_answer_sentences_and_chunk_sentences_share_their_marks() -> None:
    """kbqa.text holds the sentence marks: the chunker's ends and the answer units agree."""
    from kbqa.text import SENTENCE_END, SENTENCE_MARKS, sentences

    text = "年假5天；病假另计！加班呢？见附表。"
    assert sentences(text) == ["年假5天；", "病假另计！", "加班呢？", "见附表。"]
    assert [m.group() for m in SENTENCE_END.finditer(text)] == list("；！？。")
    assert set("；！？。") <= set(SENTENCE_MARKS)
