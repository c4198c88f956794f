"""The small HR corpus most tests index: three documents, and a helper that writes files."""

from __future__ import annotations

from pathlib import Path

LEAVE = "# 休假制度\n\n## 年假\n\n员工入职满一年后，每年享有5天带薪年假。满十年的员工每年享有10天年假。\n"
TRAVEL = "# 出差标准\n\n一线城市住宿标准为每晚600元，其他城市每晚400元。出差补贴每天100元。\n"
VPN = "远程办公需要先连接公司VPN。VPN客户端可在IT门户下载，账号与邮箱相同。\n"


def write(folder: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    """``text`` into ``folder/name`` (parents made); the path."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path
