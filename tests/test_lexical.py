"""Lexical index: BM25 ranking, incremental add/remove, persistence without pickle, catch-up."""

from __future__ import annotations

import numpy as np

from kbqa.retrieval.lexical import FILE_NAME, LexicalIndex
from kbqa.text import tokenize

DOCS = {
    1: "员工入职满一年后，每年享有5天带薪年假。",
    2: "一线城市住宿标准为每晚600元，出差补贴每天100元。",
    3: "远程办公需要先连接公司VPN，VPN客户端可在IT门户下载。",
}


def build() -> LexicalIndex:
    index = LexicalIndex()
    index.add(list(DOCS), list(DOCS.values()))
    return index


def test_tokenize_drops_punctuation_and_particles():
    assert tokenize("年假有几天？") == ["年", "假", "几天"]
    assert "vpn" in tokenize("怎么连接VPN")


def test_bm25_ranks_the_matching_chunk_first_and_skips_unrelated():
    ids, scores = build().search("VPN客户端在哪里下载", 3)
    assert ids[0] == 3 and scores[0] > 0
    assert list(scores) == sorted(scores, reverse=True)
    assert len(build().search("红烧肉", 3)[0]) == 0


def test_removed_chunks_are_gone_before_and_after_compaction(tmp_path):
    index = build()
    index.remove([3])
    assert 3 not in index.search("VPN", 3)[0]
    index.add([4], ["VPN账号被锁定30分钟后自动解锁。"])
    assert index.search("VPN", 3)[0].tolist() == [4]
    index.save(tmp_path)
    loaded = LexicalIndex.load(tmp_path)
    assert loaded.search("VPN", 3)[0].tolist() == [4]
    assert sorted(loaded.ids.tolist()) == [1, 2, 4]


def test_saved_file_loads_without_pickle(tmp_path):
    build().save(tmp_path)
    with np.load(tmp_path / FILE_NAME, allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)


def test_catch_up_tokenises_only_missing_chunks(tmp_path):
    index = build()
    asked = []

    def texts_for(ids):
        asked.extend(ids.tolist())
        yield ids, ["报销需在30天内提交发票。" for _ in ids]

    changed = index.catch_up(np.array([1, 2, 5]), texts_for)
    assert changed == 2 and asked == [5]
    assert index.search("发票", 3)[0].tolist() == [5]
    assert 3 not in index.search("VPN", 3)[0]


def test_coverage_weighs_the_rare_words_a_passage_shares_with_the_question():
    index = build()
    assert index.coverage("VPN客户端在哪里下载", [DOCS[3]]) == 1.0
    assert index.coverage("红烧肉怎么做", [DOCS[3]]) == 0.0
    partial = index.coverage("VPN和红烧肉", [DOCS[3]])
    assert 0.0 < partial < 1.0
    assert index.coverage("？！", [DOCS[3]]) == 0.0  # no tokens at all
    # the best of several passages
    assert index.coverage("VPN客户端在哪里下载", [DOCS[1], DOCS[3]]) == 1.0
    assert index.coverage("VPN客户端在哪里下载", []) == 0.0


def test_counts_kept_between_queries_follow_every_change():
    # live chunks, length norms and document frequencies are kept until the next change
    index = build()
    before = index.idf("vpn"), len(index)
    assert index.search("VPN", 3)[0].tolist() == [3]
    index.add([4], ["VPN账号被锁定30分钟后自动解锁。"])
    assert len(index) == 4 and index.idf("vpn") < before[0]
    assert sorted(index.search("VPN", 3)[0].tolist()) == [3, 4]
    index.remove([3, 4])
    assert len(index) == 2 and index.idf("vpn") > before[0]
    assert len(index.search("VPN", 3)[0]) == 0
    index.compact()
    assert len(index) == 2 and index.search("年假", 3)[0].tolist() == [1]


def test_words_jieba_cuts_apart_in_the_query_are_searched_as_the_kb_holds_them():
    # jieba cuts 入职报到 as 入/职报/到; the KB's text has 入职 and 报到
    lex = LexicalIndex()
    lex.add(
        [1, 2],
        ["新员工须在报到当天携带身份证原件到人力资源部办理入职。", "彩色打印需要部门经理审批。"],
    )
    q = "入职报到需要带哪些材料？"
    assert set(lex.recovered(q, tokenize(q))) == {"入职", "报到"}
    assert lex.search(q, 2)[0].tolist()[0] == 1
    q = "彩色打印需要谁审批？"  # every word known: nothing is added
    assert lex.recovered(q, tokenize(q)) == []
