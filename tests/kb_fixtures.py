"""Small Chinese scripts and a tiny encoder shared by the encoder, index and search tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from knowledge_base.schema import Script

SCRIPTS = [
    Script(
        "K001",
        "居民整户停电报修",
        ["我家停电了", "家里突然没电了", "整个屋子都没电了怎么办", "我家全黑了 灯都不亮"],
        "您好，请您先查看表箱内的总开关是否跳闸，我们马上为您登记故障报修工单。",
        "故障报修",
        ["停电", "报修"],
    ),
    Script(
        "K002",
        "电费突然增高",
        ["这个月电费怎么这么高", "电费比上个月多了好多", "我家电费突然涨了", "电费贵得离谱"],
        "您好，我帮您查询一下近几个月的电量电费明细，请您提供户号。",
        "业务咨询",
        ["电费", "户号"],
    ),
    Script(
        "K003",
        "分布式光伏并网申请",
        ["屋顶装光伏怎么申请并网", "我想装太阳能发电", "光伏板并网要什么手续", "家里装分布式光伏找谁"],
        "您好，分布式光伏并网可以通过网上国网提交申请，需要提供身份证和房产证明。",
        "业务咨询",
        ["分布式光伏", "并网"],
    ),
    Script(
        "K004",
        "峰谷电价咨询",
        ["峰谷电价怎么算", "晚上用电是不是便宜", "谷时段是几点到几点", "怎么申请峰谷电"],
        "您好，峰谷分时电价的峰段和谷段按当地价格主管部门规定执行，您可以在网上国网办理。",
        "业务咨询",
        ["峰谷电价"],
    ),
    Script(
        "K005",
        "网上国网绑定户号",
        ["网上国网怎么绑户号", "APP里怎么添加我家户号", "绑定户号提示失败", "手机上怎么查我家的户号"],
        "您好，请在网上国网首页点击户号绑定，输入户号和户主姓名即可。",
        "业务咨询",
        ["网上国网", "户号"],
    ),
    Script(
        "K006",
        "欠费停电后交费复电",
        ["交了电费怎么还没来电", "欠费停电交完钱多久来电", "我补交电费了 啥时候送电", "缴费以后还是没电"],
        "您好，费用结清后我们会在24小时内为您恢复供电。",
        "服务申请",
        ["欠费", "复电"],
    ),
    Script(
        "K007",
        "扬言投诉",
        ["我要投诉你们", "再不解决我就打12398", "你们这服务太差了我要曝光", "我要找媒体"],
        "非常抱歉给您带来不便，我非常理解您的心情，我马上为您加急处理。",
        "投诉",
        ["投诉"],
        ["敏感场景"],
    ),
    Script(
        "K008",
        "电表跑得快",
        ["电表是不是坏了走得特别快", "我怀疑电表不准", "电能表计量有问题", "要求校验电表"],
        "您好，您可以申请电能表校验，我们会安排工作人员上门检测。",
        "服务申请",
        ["电表", "校验"],
    ),
    Script(
        "K009",
        "计划停电查询",
        ["明天是不是要停电", "计划停电什么时候", "我们小区检修停电几点来电", "停电通知在哪看"],
        "您好，计划停电会提前7天公告，您可以在网上国网查询停电信息。",
        "业务咨询",
        ["计划停电"],
    ),
    Script(
        "K010",
        "充电桩报装",
        ["小区装充电桩怎么申请", "电动汽车充电桩报装", "私人充电桩要什么材料", "想装个充电桩"],
        "您好，个人充电桩报装需要提供车位产权证明和物业同意书。",
        "业务咨询",
        ["充电桩", "报装"],
    ),
]

# Paraphrases a user would type, with the script that answers each.
QUERIES = [
    ("我家没电了 快来修", "K001"),
    ("电费怎么这么贵", "K002"),
    ("楼顶装光伏发电怎么并网", "K003"),
    ("峰谷电价是怎么算的", "K004"),
    ("网上国网绑定户号", "K005"),
    ("交完电费多久来电", "K006"),
    ("我要打12398投诉", "K007"),
    ("电表走得太快了", "K008"),
    ("小区明天计划停电吗", "K009"),
    ("充电桩怎么报装", "K010"),
]


def tiny_encoder_dir(root: Path) -> Path:
    """A built-in encoder trained for a few seconds on the fixture scripts only."""
    from training.encoder import TrainConfig, train_encoder

    groups = [[*s.questions, s.scenario] for s in SCRIPTS]
    cfg = TrainConfig(dim=32, epochs=3, min_count=1, batch_size=32, kb_pairs_per_script=30, val_fraction=0.0)
    enc, _ = train_encoder(pairs_path=None, scripts_path=None, cfg=cfg, name="tiny", extra_groups=groups)
    path = root / "tiny-encoder"
    enc.save(path)
    return path


_trained: dict[str, Path] = {}


def shared_tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny encoder, trained once per test session whichever module asks first."""
    if "path" not in _trained:
        _trained["path"] = tiny_encoder_dir(tmp_path_factory.mktemp("encoders"))
    return _trained["path"]


def copy_scripts() -> list[Script]:
    return [
        Script(s.id, s.scenario, list(s.questions), s.script, s.category, list(s.keywords), list(s.tags))
        for s in SCRIPTS
    ]
