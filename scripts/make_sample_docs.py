"""Write the binary and GBK sample files of ingest/ (docx, pdf, xlsx, a GBK txt), reproducibly.

Run from the repository root: ``python scripts/make_sample_docs.py [OUT_DIR]`` (default ingest/).
Needs python-docx, openpyxl and reportlab (the dev extra). The same input gives byte-identical
files, so regenerating them leaves git clean.
"""

from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path

COMPANY = "星河云科技有限公司"
# Fixed timestamps, so that output does not change from one run to the next.
STAMP = "2024-03-01T09:00:00Z"
ZIP_TIME = (2024, 3, 1, 9, 0, 0)

# Each document: (kind, text) blocks; kind is "h1", "h2", "p" or "table" (rows of cells).
Block = tuple[str, "str | list[list[str]]"]

ATTENDANCE = f"""考勤管理办法

第一条 为了维护正常的工作秩序，根据国家有关规定和公司实际情况，制定本办法。本办法适用于{COMPANY}全体员工。

第二条 工作时间
公司实行每周五天工作制，标准工作时间为9:00至18:00，其中12:00至13:00为午休时间。
公司实行弹性上班制度：员工可在8:30至9:30之间到岗，到岗后满9小时（含1小时午休）即可下班。例如8:40到岗的，17:40以后可以下班。

第三条 打卡方式
员工上下班均需打卡。打卡方式有两种：在办公室刷工牌门禁，或使用星云OA手机App打卡（需在办公室500米范围内）。外地出差期间不需要打卡，以出差审批单为准。

第四条 迟到和早退
9:30以后到岗的为迟到，未满9小时提前下班的为早退。
每月迟到或早退累计3次以内、每次不超过30分钟的，不做处理。
超过3次的，每次扣除当月绩效分1分。
迟到或早退超过30分钟的，按事假半天处理。

第五条 补卡
因忘记打卡、设备故障等原因缺少打卡记录的，应在3个工作日内在星云OA的“考勤”模块提交补卡申请，经直属经理审批后生效。每人每月最多补卡3次。

第六条 外出与远程办公
因公外出办事的，应在星云OA提交“外出申请”。经直属经理批准，员工每周可以远程办公1天，远程办公期间需保持企业微信在线，并按时参加会议。

第七条 加班与调休
工作日加班需事先在星云OA提交加班申请，经直属经理批准后方可计算加班。
工作日和周末加班原则上安排1:1调休，调休需在加班之日起6个月内使用，过期作废。
法定节假日加班的，按国家规定支付300%的加班工资。
工作日晚上的加班餐费和打车费用，按《费用报销制度》报销。

第八条 旷工
未经批准不到岗，或迟到、早退超过4小时的，按旷工处理。连续旷工3天或一年内累计旷工5天的，视为严重违反公司规章制度，公司可以解除劳动合同。

第九条 考勤统计
每月5日前，人力资源部发布上月考勤结果。员工对考勤结果有异议的，应在发布后3个工作日内向人力资源部提出。

第十条 本办法由人力资源部负责解释，自2024年1月1日起施行。
"""

TRAVEL: list[Block] = [
    ("h1", "出差管理办法"),
    ("p", f"本办法规定{COMPANY}员工因公出差的申请、交通、住宿和补助标准。"),
    ("h2", "一、出差申请"),
    (
        "p",
        "员工出差应至少提前3个工作日在星云OA提交出差申请，写明出差地点、日期和事由，"
        "经直属经理审批；出差超过7天或出境出差的，还需部门负责人审批。"
        "未经审批出差的，相关费用不予报销。",
    ),
    ("h2", "二、交通标准"),
    (
        "p",
        "城市之间出行优先乘坐高铁或动车，普通员工和经理乘坐二等座，总监及以上可乘坐一等座。"
        "单程高铁时间超过4小时的，可以乘坐飞机经济舱。机票和火车票统一通过星云OA的“差旅预订”购买，"
        "公司直接结算，员工无需垫付。",
    ),
    (
        "p",
        "出差地的市内交通费用（地铁、公交、出租车）凭票实报实销，每天不超过100元。",
    ),
    ("h2", "三、住宿标准"),
    ("p", "住宿费按城市和职级设上限（元/晚），超出部分由个人承担："),
    (
        "table",
        [
            ["城市", "普通员工", "经理", "总监及以上"],
            ["北京、上海、广州、深圳", "500", "650", "800"],
            ["其他省会城市和计划单列市", "400", "500", "650"],
            ["其他城市", "300", "400", "500"],
        ],
    ),
    (
        "p",
        "两名同性别员工同行出差的，原则上合住一间，住宿标准按其中较高职级的标准上浮30%执行。",
    ),
    ("h2", "四、出差补助"),
    (
        "p",
        "出差期间发放伙食补助，每天100元，按出差的日历天数计算，不需要发票，随报销款一起发放。"
        "客户或会议主办方已安排餐食的，当天伙食补助减半。",
    ),
    ("h2", "五、报销"),
    (
        "p",
        "出差结束后15天内，在星云OA提交差旅报销单，附住宿发票和市内交通票据。"
        "出差前预支了备用金的，报销时自动冲抵借款。",
    ),
]

ONBOARDING: list[Block] = [
    ("h1", "新员工入职指南"),
    ("p", f"欢迎加入{COMPANY}！这份指南帮助你顺利度过入职的第一周。"),
    ("h2", "一、报到时间和地点"),
    (
        "p",
        "入职当天上午9:30，请到所在办公室的前台报到。杭州总部的地址是杭州市西湖区星河路88号"
        "星河大厦3楼。其他办公室的地址见《各地办公室》表格。",
    ),
    ("h2", "二、需要携带的材料"),
    (
        "table",
        [
            ["材料", "要求"],
            ["身份证", "原件，现场复印"],
            ["学历学位证书", "原件，最高学历"],
            ["离职证明", "上一家单位出具，应届毕业生免交"],
            ["入职体检报告", "近3个月内，二级及以上医院"],
            ["银行卡", "本人名下招商银行储蓄卡，用作工资卡"],
            ["照片", "一寸白底照片2张"],
        ],
    ),
    ("h2", "三、第一天的安排"),
    (
        "p",
        "上午：人力资源部办理入职手续，签订劳动合同（首次签订3年，试用期6个月），领取工牌。"
        "下午：到IT服务台领取笔记本电脑，开通企业邮箱、星云OA和企业微信账号，初始密码会发到你的手机上，"
        "首次登录后请立即修改。",
    ),
    ("h2", "四、导师和培训"),
    (
        "p",
        "每位新员工都会有一名导师，在试用期内帮助你熟悉业务和团队。"
        "公司每月第一个周三举办新员工培训，内容包括公司介绍、规章制度、信息安全和产品知识，"
        "入职后首次培训必须参加。",
    ),
    ("h2", "五、试用期和转正"),
    (
        "p",
        "试用期满前两周，直属经理会和你进行转正面谈，并在星云OA发起转正审批。"
        "试用期表现优秀的，可由直属经理申请提前转正，但试用期最短不少于3个月。",
    ),
    ("h2", "六、有问题找谁"),
    (
        "p",
        "入职手续和社保公积金：人力资源部（分机8100）；电脑和账号：IT服务台（分机8000）；"
        "工位和门禁：行政部（分机8300）。",
    ),
]

BENEFITS: list[Block] = [
    ("h1", "员工福利说明"),
    ("p", f"{COMPANY}为员工提供以下福利。除特别说明外，试用期员工同样享受。"),
    ("h2", "一、社会保险和住房公积金"),
    (
        "p",
        "公司按员工实际工资足额缴纳养老、医疗、失业、工伤、生育保险和住房公积金。"
        "住房公积金的公司和个人缴存比例均为12%。入职当月即开始缴纳。",
    ),
    ("h2", "二、补充医疗保险"),
    (
        "p",
        "公司为每位员工购买补充商业医疗保险，社保报销后的门诊和住院自付部分可再报销80%，"
        "每年门诊限额5000元，住院限额20万元。员工的配偶和子女可以按团体价格自费参保。",
    ),
    ("h2", "三、年度体检"),
    ("p", "每年4月至6月安排一次免费年度体检，司龄满3年的员工可升级为高级套餐。"),
    ("h2", "四、补贴"),
    (
        "p",
        "餐补：每个工作日30元，每月随工资发放到饭卡。通讯补贴：每月100元，随工资发放。"
        "健身补贴：凭健身卡发票每月报销不超过100元。",
    ),
    ("h2", "五、节日和关怀"),
    (
        "p",
        "春节、端午节和中秋节发放节日礼品；员工生日当月发放200元生日礼金；"
        "结婚发放1000元贺礼，生育发放1000元贺礼；员工或直系亲属住院，公司送上慰问。",
    ),
    ("h2", "六、团队活动"),
    ("p", "每个团队按每人每季度300元的标准安排团建经费，由团队负责人组织使用，当季有效。"),
    ("h2", "七、假期"),
    ("p", "带薪年假、病假、婚假、产假等假期，按《员工手册：休假制度》执行。"),
]

SECURITY: list[Block] = [
    ("h1", "信息安全规范"),
    ("p", f"本规范适用于{COMPANY}全体员工、实习生和外包人员，违反本规范将按公司纪律处理。"),
    ("h2", "一、账号与密码"),
    (
        "p",
        "域账号密码至少12位，需包含大写字母、小写字母、数字和符号中的至少三类；"
        "每90天必须更换一次，不能与最近5次使用过的密码相同。"
        "不得把密码告诉他人，不得把密码写在便签上或保存在未加密的文件里。",
    ),
    ("h2", "二、电脑使用"),
    (
        "p",
        "离开座位时必须锁屏（Windows按Win+L，macOS按Control+Command+Q），电脑5分钟无操作会自动锁屏。"
        "公司电脑只能安装软件中心提供的软件，其他软件需在星云OA提交申请。",
    ),
    ("h2", "三、数据分级"),
    (
        "p",
        "公司数据分为四级：公开、内部、机密、绝密。客户数据、源代码和财务数据至少属于机密级。"
        "机密和绝密数据不得存放在个人设备或私人网盘上，不得用私人U盘拷贝；"
        "确需向外部发送的，应经部门负责人审批，并加密后发送。",
    ),
    ("h2", "四、邮件安全"),
    (
        "p",
        "收到可疑邮件（如要求紧急转账、索要密码、附件来源不明）时，不要点击链接或打开附件，"
        "请把邮件作为附件转发到 security@xinghe.example，然后删除。",
    ),
    ("h2", "五、设备丢失和安全事件"),
    (
        "p",
        "公司电脑、手机或工牌丢失，应在1小时内报告IT服务台（分机8000），IT会远程锁定设备并重置相关账号。"
        "发现数据泄露、病毒感染等安全事件，应立即报告信息安全部。",
    ),
    ("h2", "六、访客和办公区"),
    (
        "p",
        "访客须在前台登记并由员工全程陪同。下班时请把含有机密信息的纸质文件锁进抽屉，"
        "废弃的机密文件用碎纸机销毁。",
    ),
]

OFFICES = [
    ["城市", "办公室", "地址", "前台电话", "开放时间"],
    ["杭州", "总部", "杭州市西湖区星河路88号星河大厦3楼", "0571-8888 6000", "工作日8:00-20:00"],
    ["北京", "北京分公司", "北京市海淀区中关村南大街18号云谷中心12层", "010-6666 3200", "工作日8:30-19:30"],
    ["上海", "上海分公司", "上海市浦东新区张江路258号B座7楼", "021-5555 7100", "工作日8:30-19:30"],
    ["成都", "成都研发中心", "成都市高新区天府大道中段500号天府软件园C区5栋", "028-8765 4300", "工作日8:30-19:30"],
]  # fmt: skip


def write_docx(path: Path, title: str, blocks: list[Block]) -> None:
    import docx

    document = docx.Document()
    props = document.core_properties
    props.title, props.author, props.last_modified_by = title, COMPANY, COMPANY
    for kind, content in blocks:
        if kind == "table":
            table = document.add_table(rows=0, cols=len(content[0]))
            table.style = "Table Grid"
            for row in content:
                for cell, value in zip(table.add_row().cells, row, strict=True):
                    cell.text = value
        elif kind in ("h1", "h2"):
            document.add_heading(str(content), level=int(kind[1]))
        else:
            document.add_paragraph(str(content))
    document.save(str(path))
    _freeze_zip(path)


def write_pdf(path: Path, title: str, blocks: list[Block]) -> None:
    from reportlab import rl_config
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    rl_config.invariant = 1  # no creation date or random document id in the output
    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    # wordWrap CJK: Chinese has no spaces, so lines may break between any two characters.
    base = ParagraphStyle("body", fontName="STSong-Light", fontSize=11, leading=18, wordWrap="CJK")
    styles = {
        "h1": ParagraphStyle("h1", parent=base, fontSize=18, leading=26, spaceAfter=10),
        "h2": ParagraphStyle("h2", parent=base, fontSize=13, leading=20, spaceBefore=8),
        "p": ParagraphStyle("p", parent=base, spaceAfter=6),
    }
    story = []
    for kind, content in blocks:
        if kind == "table":
            table = Table([[Paragraph(c, base) for c in row] for row in content])
            table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.grey)]))
            story += [table, Spacer(1, 8)]
        else:
            story.append(Paragraph(str(content), styles[kind]))
    doc = SimpleDocTemplate(str(path), pagesize=A4, title=title, author=COMPANY)
    doc.build(story)


def write_xlsx(path: Path, rows: list[list[str]]) -> None:
    import datetime

    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "办公室"
    for row in rows:
        sheet.append(row)
    for column, width in zip("ABCDE", (8, 14, 48, 16, 18), strict=True):
        sheet.column_dimensions[column].width = width
    stamp = datetime.datetime(2024, 3, 1, 9, 0, 0)
    book.properties.creator = COMPANY
    book.properties.created = book.properties.modified = stamp
    book.save(path)
    _freeze_zip(path)


def _freeze_zip(path: Path) -> None:
    """Rewrite an OOXML zip with fixed entry times and document dates, for identical bytes."""
    with zipfile.ZipFile(path) as source:
        entries = [(info, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for info, data in entries:
            if info.filename == "docProps/core.xml":
                data = re.sub(
                    rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*", rb"\g<1>" + STAMP.encode(), data
                )
            target.writestr(zipfile.ZipInfo(info.filename, ZIP_TIME), data, zipfile.ZIP_DEFLATED)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # Saved in GBK on purpose: many Chinese office files are, and the loader must detect it.
    (out / "考勤管理办法.txt").write_bytes(ATTENDANCE.replace("\n", "\r\n").encode("gbk"))
    write_docx(out / "出差管理办法.docx", "出差管理办法", TRAVEL)
    write_docx(out / "新员工入职指南.docx", "新员工入职指南", ONBOARDING)
    write_pdf(out / "员工福利说明.pdf", "员工福利说明", BENEFITS)
    write_pdf(out / "信息安全规范.pdf", "信息安全规范", SECURITY)
    write_xlsx(out / "各地办公室.xlsx", OFFICES)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("ingest"))
