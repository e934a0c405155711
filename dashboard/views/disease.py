"""Does it look at the disease? The shortcut audit and the explanation fidelity of a run (and of the
comparison run) as plots with 95% intervals beside what chance scores, one plain sentence each."""
import pandas as pd
import streamlit as st

from core.audits.shortcut import AUDIT_TABLE
from dashboard import audit_text, data, external_ui, trust_ui, ui

ctx = ui.current()
other = ui.comparison()
shown = [c for c in (ctx, other) if c is not None]
decision = ctx.rv.decision_branch()

st.title("Does it look at the disease?")
st.caption("COVID-CT's COVID slices were cut from papers, its non-COVID slices come from other sources: a network "
           "can score well on its test split by recognising where a slice came from. These measurements show "
           "whether this run reads the lungs and the lesions instead."
           + (f" Comparison run: **{other.name}** (orange)." if other else " Pick a second run in the sidebar to "
              "compare."))

audits = {}
for c in shown:
    try:
        audits[c.name] = data.audit_frames(c.runs, c.name, c.stamp)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a damaged or foreign shortcut.json
        st.error(f"Run `{c.name}`: its shortcut audit cannot be read ({exc}). Run the audit again.")
        st.stop()
missing = [c for c in shown if audits[c.name] is None]
for c in missing:
    st.info(f"Run `{c.name}` has no shortcut audit yet. Make it with "
            f"`python -m train shortcut --run {c.rv.run.path} --data-root DATA` (DATA holds covid-ct/ and semiseg/; "
            "a few minutes on a CPU).", icon="🧪")
measured = [c for c in shown if audits[c.name] is not None]


def joined(table: str) -> pd.DataFrame:
    return pd.concat([audits[c.name][table].assign(run=c.name) for c in measured], ignore_index=True)


if measured:
    every = list(dict.fromkeys(joined("auc").branch))
    default = [b for b in (decision, "global", "lesion-share") if b in every]
    picked = st.multiselect("Branches", every, default=default, key="disease_branches",
                            help="`lesion-share`: the segmenter's lesion share of the lung field, no classifier")
    focus = decision if decision in picked else (picked[0] if picked else None)

    st.subheader("1 · Can it tell the classes apart without seeing the lungs?")
    auc = joined("auc")
    auc = auc[auc.branch.isin(picked)].assign(what=lambda d: d.branch + " · " + d.condition)
    st.plotly_chart(ui.ci_bars(auc, "what", "auc", "run", title="COVID-CT test AUC: whole input, lungs only, lungs "
                               "blanked; lungs readable: the slices shown in a soft-tissue window left out", axis="AUC",
                               refs=((0.5, "chance"),)), width="stretch", config=ui.PLOTLY_CONFIG, key="disease_auc")
    for c in measured:
        if focus:
            name = "" if len(measured) == 1 else f"`{c.name}` · "
            st.markdown(name + audit_text.blanked(audits[c.name]["auc"], focus))
            if audit_text.window(audits[c.name]["auc"], focus):
                st.markdown(name + audit_text.window(audits[c.name]["auc"], focus))

    st.subheader("2 · Does it find COVID on slices from another source?")
    ext = joined("external")
    ext = ext[ext.branch.isin(picked)]
    if ext.empty:
        st.caption("No external slices were scored.")
    else:
        st.plotly_chart(ui.ci_bars(ext, "branch", "sensitivity", "run", title="Sensitivity on COVID-SemiSeg's test "
                                   "slices (all COVID) at each branch's operating point", axis="sensitivity"),
                        width="stretch", config=ui.PLOTLY_CONFIG, key="disease_external")
        for c in measured:
            if focus:
                st.markdown(("" if len(measured) == 1 else f"`{c.name}` · ")
                            + audit_text.external(audits[c.name]["external"], focus))

    st.subheader("3 · Does its map point at the lesions?")
    point = joined("pointing")
    st.plotly_chart(ui.ci_bars(point, "map", "pointing", "run", title="Pointing game on COVID-SemiSeg's lesion masks: "
                               "branch maps beside maps that know nothing of the slice", axis="share of slices"),
                    width="stretch", config=ui.PLOTLY_CONFIG, key="disease_pointing")
    for c in measured:
        maps = audits[c.name]["pointing"]
        branch_maps = list(maps[maps.kind == "branch"]["map"])
        m = decision if decision in branch_maps else (branch_maps[0] if branch_maps else None)
        if m:
            st.markdown(("" if len(measured) == 1 else f"`{c.name}` · ") + audit_text.pointing(maps, m))

    with st.expander("The audit's numbers"):
        for c in measured:
            st.markdown(f"`{c.name}`")
            st.dataframe(c.rv.run_table(AUDIT_TABLE), hide_index=True, width="stretch")

st.subheader("Explanation fidelity · every map method against the lesion masks")
fidelity = [(c, c.rv.run_table("fidelity.csv")) for c in shown]
for c, table in fidelity:
    if table is None:
        st.caption(f"`{c.name}`: not measured. `python -m train fidelity --run {c.rv.run.path} --data-root DATA`")
have = [(c, t) for c, t in fidelity if t is not None]
if have:
    fid = pd.concat([t.assign(run=c.name) for c, t in have], ignore_index=True)
    fid = fid.assign(what=fid.branch + " · " + fid.method, low=fid.pointing_ci_low, high=fid.pointing_ci_high)
    st.plotly_chart(ui.ci_bars(fid, "what", "pointing_hit_rate", "run", title="Pointing game per branch and map "
                               "method (rows of kind `baseline` know nothing of the slice)", axis="share of slices"),
                    width="stretch", config=ui.PLOTLY_CONFIG, key="disease_fidelity")
    st.markdown("A map method is only worth showing a clinician if its bar stands clear of the baselines' bars.")

st.subheader("4 · Can its maps be trusted?")
st.caption("A map can sit on the lesions without coming from the model: an edge detector does (Adebayo et al. 2018). "
           "Each map method is tested four ways on labelled COVID-SemiSeg slices, beside maps that know no model "
           "(uniform, random, edge): does it change when the model's weights are randomised, does removing what it "
           "marks first lower P(COVID) more than chance or edges do, does it stay put under slight noise, does it "
           "find the expert's lesions better than the baselines. A method that fails a test is flagged ⚠ wherever "
           f"it is named. Run `{ctx.name}` only.")
if not trust_ui.maps_missing(ctx):
    rows = trust_ui.maps_rows(ctx)
    methods = list(dict.fromkeys(f"{r['branch']}/{r['method']}" for r in rows if r.get("kind") == "method"))

    def map_choice(branch_method: str) -> str:
        branch, method = branch_method.split("/", 1)
        return f"{branch} · {trust_ui.method_label(ctx, method, branch)}"

    picked_map = st.selectbox("Map method", methods, key="disease_map_method", format_func=map_choice)
    if picked_map:
        picked_branch, picked_method = picked_map.split("/", 1)
        trust_ui.map_verdicts(ctx, picked_method, picked_branch)
    with st.expander("Every method and baseline, test by test"):
        st.dataframe(trust_ui.verdict_table(rows), hide_index=True, width="stretch",
                     column_config={"value": st.column_config.NumberColumn(format="%.3f")})

st.subheader("5 · Can its decision be trusted, and on which slices?")
trust_ui.decision_tables(ctx)

st.subheader("6 · Other hospitals: does the decision carry over?")
st.caption("Scores on data that chose nothing: COVID-CT's test split, COVID-SemiSeg's test slices (another source, "
           "all COVID) and COVID-CT-MD (a third hospital: a COVID-19 patient's infected slices against a normal "
           "patient's and a community-acquired pneumonia patient's), with 95% intervals. Intervals over slices are "
           "too narrow: slices of one patient are not independent.")
for c in shown:
    external_ui.other_hospitals(c, "" if len(shown) == 1 else f"`{c.name}` · ")
