"""apply_scaling_job: the stored scaling plans onto AWS. A side effect, so an op job launched on
purpose (or by a schedule a user turns on), never an asset materialisation. Dry run by default."""

import dagster as dg


class ApplyConfig(dg.Config):
    dry_run: bool = True  # record exactly what would be done and change nothing
    targets: list[str] = []  # scaling targets by name; empty: every target in scaling.yaml
    actor: str = ""  # who asked, for the record; default: the run's user tag or "dagster"


@dg.op(required_resource_keys={"database", "autoscaling"}, tags={"kind": "aws"})
def apply_scaling_plans(context: dg.OpExecutionContext, config: ApplyConfig) -> dg.Output:
    """For each target: its newest plan -> the scheduled actions that make AWS match it (floors
    raised a warm-up ahead, obsolete shaper actions removed, the user's own left alone) -> applied
    or, in a dry run, recorded as would-apply. Everything is checked before anything changes."""
    from datetime import datetime, timezone

    from shaper_pipelines.defs.forecast.assets import load_scaling
    from shaper_pipelines.lib.aws_scaling import (
        ScalingError, TargetState, action_record, actions_for_plan, apply, describe_target,
    )

    database, aws = context.resources.database, context.resources.autoscaling
    scaling = load_scaling()
    names = config.targets or [t.name for t in scaling.targets]
    actor = config.actor or context.run.tags.get("user", "") or f"dagster run {context.run_id}"
    online = aws.reachable()
    if not config.dry_run:
        # The operators' switches (control API, `shaper scaling mode`) outrank a run's config.
        with database.control_store() as control:
            mode = control.scaling_mode()
        who = f" (set by {mode.changed_by or 'nobody'}{': ' + mode.note if mode.note else ''})"
        if mode.paused:
            raise dg.Failure(f"scaling is paused{who}; nothing was applied. Resume it with "
                             "`shaper scaling mode --resume` or PUT /v1/scaling/mode")
        if mode.dry_run:
            raise dg.Failure(f"scaling is in dry-run mode{who}; nothing was applied. Switch it with "
                             "`shaper scaling mode --dry-run off` or PUT /v1/scaling/mode")
    if not config.dry_run and not online:
        raise dg.Failure("no AWS endpoint and no AWS credentials: a real apply has nothing to apply to "
                         "(set SHAPER_AWS_ENDPOINT_URL or configure AWS credentials)")
    now = datetime.now(timezone.utc)
    summary, failures, total = [], [], 0
    with database.scaling_store() as store:
        for name in names:
            try:
                t = scaling.target(name)
                header, plan = store.latest_plan(name)
            except (KeyError, LookupError, ValueError) as exc:
                failures.append(f"{name}: {exc}")
                continue
            try:
                if online:
                    client = aws.client(t)
                    state = describe_target(t, client)
                    actions = actions_for_plan(t, plan, now, state)
                    records = apply(actions, client, dry_run=config.dry_run, actor=actor, store=store,
                                    plan_id=header["plan_id"])
                else:
                    # Offline dry run: the bounds come from scaling.yaml and nothing is described.
                    state = TargetState(t.min_capacity, t.max_capacity, None, ())
                    actions = actions_for_plan(t, plan, now, state)
                    records = [action_record(a, actor=actor, dry_run=True, plan_id=header["plan_id"], at=now,
                                             outcome="would-apply (offline: AWS not reached; bounds from scaling.yaml)")
                               for a in actions]
                    store.record_actions(records)
            except ScalingError as exc:
                failures.append(f"{name}: {exc}")
                continue
            total += len(records)
            context.log.info(f"{name}: {len(records)} action(s) {'would be applied' if config.dry_run else 'applied'}")
            for r in records[:60]:
                params = r["params"]
                floor = params.get("MinSize", params.get("ScalableTargetAction", {}).get("MinCapacity", ""))
                when = params.get("StartTime", params.get("Schedule", ""))
                summary.append(f"| {name} | {r['action']} | {when} | {floor} | {r['outcome']} | {r['reason']} |")
    table = "\n".join(["| target | action | when | floor | outcome | why |", "|---|---|---|---:|---|---|", *summary])
    if failures:
        context.log.error("\n".join(failures))
        raise dg.Failure(f"{len(failures)} target(s) could not be applied:\n" + "\n".join(failures),
                         metadata={"actions": dg.MetadataValue.md(table)})
    return dg.Output(total, metadata={"dry_run": config.dry_run, "online": online, "actions": dg.MetadataValue.int(total),
                                      "what": dg.MetadataValue.md(table)})


@dg.job(description="Apply the newest scaling plan of each target to AWS Auto Scaling (EC2 groups; ECS services "
                    "via Application Auto Scaling). Dry run unless config says dry_run: false.")
def apply_scaling_job():
    apply_scaling_plans()
