"""apply_scaling_job: the stored scaling plans onto AWS. A side effect, so an op job launched on
purpose (or by a schedule a user turns on), never an asset materialisation. Dry run by default."""

import dagster as dg

SHOWN_PER_TARGET = 60  # rows of the actions table per target; the rest are counted
OFFLINE = "AWS was not reached (no endpoint, no credentials): the bounds are scaling.yaml's and nothing was checked"
OFFLINE_OUTCOME = "would-apply (offline: AWS not reached; bounds from scaling.yaml)"
_HINTS = {"paused": "Resume it with `shaper scaling mode --resume` or PUT /v1/scaling/mode",
          "dry-run": "Switch it with `shaper scaling mode --dry-run off` or PUT /v1/scaling/mode"}


class ApplyConfig(dg.Config):
    dry_run: bool = True  # record exactly what would be done and change nothing
    targets: list[str] = []  # scaling targets by name; empty: every target in scaling.yaml
    actor: str = ""  # who asked, for the record; default: the run's user tag or "dagster"


def _refusal(mode) -> str | None:
    """Why the operators' switches forbid changing anything now, or None."""
    who = f" (set by {mode.changed_by or 'nobody'}{': ' + mode.note if mode.note else ''})"
    if mode.paused:
        return f"scaling is paused{who}"
    if mode.dry_run:
        return f"scaling is in dry-run mode{who}"
    return None


@dg.op(required_resource_keys={"database", "autoscaling"}, tags={"kind": "aws"})
def apply_scaling_plans(context: dg.OpExecutionContext, config: ApplyConfig) -> dg.Output:
    """For each target: its newest plan -> the scheduled actions that make AWS match it (floors
    raised a warm-up ahead, obsolete shaper actions removed, the user's own left alone) -> applied
    or, in a dry run, recorded as would-apply. Every target is checked before any changes, a
    failure restores every target the run changed, and the operators' switches are read again
    before each target."""
    from datetime import datetime, timezone

    from shaper_pipelines.config import load_scaling
    from shaper_pipelines.lib.aws_apply import action_record, apply_targets, target_for_plan
    from shaper_pipelines.lib.aws_scaling import ScalingError, TargetState, actions_for_plan

    database, aws = context.resources.database, context.resources.autoscaling
    scaling = load_scaling()
    names = config.targets or [t.name for t in scaling.targets]
    actor = config.actor or context.run.tags.get("user", "") or f"dagster run {context.run_id}"
    online = aws.reachable()

    def switches(_target: str) -> str | None:
        with database.control_store() as control:
            return _refusal(control.scaling_mode())

    if not config.dry_run:
        # The operators' switches (control API, `shaper scaling mode`) outrank a run's config.
        refused = switches("")
        if refused:
            hint = _HINTS["paused" if refused.startswith("scaling is paused") else "dry-run"]
            raise dg.Failure(f"{refused}; nothing was applied. {hint}")
        if not online:
            raise dg.Failure("no AWS endpoint and no AWS credentials: a real apply has nothing to apply to "
                             "(set SHAPER_AWS_ENDPOINT_URL or configure AWS credentials)")
    now = datetime.now(timezone.utc)
    with database.scaling_store() as store:
        plans, missing = [], []
        for name in names:
            try:
                t = scaling.target(name)
                header, plan = store.latest_plan(name)
                plans.append((t, header["plan_id"], plan))
            except (KeyError, LookupError, ValueError) as exc:
                missing.append(f"{name}: {exc}")
        if missing:
            # All targets or none: one without a plan stops the run before anything changes.
            raise dg.Failure("nothing was applied:\n" + "\n".join(missing))
        try:
            if online:
                runs = [target_for_plan(t, plan, aws.client(t), plan_id=plan_id) for t, plan_id, plan in plans]
                records = apply_targets(runs, store=store, actor=actor, dry_run=config.dry_run, now=now,
                                        pacing=aws.pacing(), before_target=None if config.dry_run else switches)
            else:
                # Offline dry run: the bounds come from scaling.yaml and nothing is described.
                records = []
                for t, plan_id, plan in plans:
                    actions = actions_for_plan(t, plan, now, TargetState(t.min_capacity, t.max_capacity, None, ()))
                    records += [action_record(a, actor=actor, dry_run=True, plan_id=plan_id, at=now,
                                              outcome=OFFLINE_OUTCOME)
                                for a in actions]
                store.record_actions(records)
        except ScalingError as exc:
            table = _table(getattr(exc, "records", []), online)
            context.log.error(str(exc))
            raise dg.Failure(str(exc), metadata={"actions": dg.MetadataValue.md(table)}) from None
    for name in names:
        mine = [r for r in records if r["target"] == name]
        context.log.info(f"{name}: {len(mine)} action(s) {'would be applied' if config.dry_run else 'applied'}")
    return dg.Output(len(records), metadata={"dry_run": config.dry_run, "online": online,
                                             "actions": dg.MetadataValue.int(len(records)),
                                             "what": dg.MetadataValue.md(_table(records, online))})


def _table(records: list[dict], online: bool) -> str:
    """The actions as a markdown table, at most SHOWN_PER_TARGET rows per target; said once above
    it when AWS was not reached, not in every row."""
    rows, by_target = [], {}
    for r in records:
        by_target.setdefault(r["target"], []).append(r)
    for name, mine in by_target.items():
        for r in mine[:SHOWN_PER_TARGET]:
            params = r["params"]
            floor = params.get("MinSize", params.get("ScalableTargetAction", {}).get("MinCapacity", ""))
            when = params.get("StartTime", params.get("Schedule", ""))
            outcome = "would-apply" if r["outcome"] == OFFLINE_OUTCOME else r["outcome"]
            rows.append(f"| {name} | {r['action']} | {when} | {floor} | {outcome} | {r['reason']} |")
        if len(mine) > SHOWN_PER_TARGET:
            rows.append(f"| {name} | … {len(mine) - SHOWN_PER_TARGET} more | | | | |")
    above = [] if online else [OFFLINE, ""]
    return "\n".join([*above, "| target | action | when | floor | outcome | why |", "|---|---|---|---:|---|---|",
                      *rows])


@dg.job(description="Apply the newest scaling plan of each target to AWS Auto Scaling (EC2 groups; ECS services "
                    "via Application Auto Scaling). Dry run unless config says dry_run: false.")
def apply_scaling_job():
    apply_scaling_plans()
