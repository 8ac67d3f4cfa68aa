// The patient summary a nurse sees on a call (/agent) and a clinician in a visit (/room):
// who the patient is, their clinical alerts, allergies, medications, conditions and coming
// appointments. It opens only while the permission table allows it (on the call, in the
// visit) and each read is audited. The page holds elements with the ids used here.
const $ = (id) => document.getElementById(id);

// Fills the summary of patient `id`; false when it is not open to this user.
export async function showSummary(id) {
  const r = await fetch(`/api/v1/patients/${encodeURIComponent(id)}/summary`);
  if (r.status !== 200) return false;
  const p = await r.json();
  const d = p.demographics;
  $('patient-name').textContent = d.name;
  $('patient-facts').textContent = [
    d.birth_date && `born ${d.birth_date}`, d.mrn && `MRN ${d.mrn}`,
    d.preferred_language && `speaks ${d.preferred_language}`,
  ].filter(Boolean).join(' · ');
  $('patient-alerts').replaceChildren(...p.alerts.map((a) => {
    const li = document.createElement('li');
    li.textContent = `${a.severity}: ${a.message}`;
    return li;
  }));
  const lists = [['Allergies', p.allergies], ['Medications', p.medications], ['Conditions', p.conditions],
    ['Appointments', p.upcoming_appointments]];
  $('patient-lists').replaceChildren(...lists.flatMap(([title, items]) => {
    const dt = document.createElement('dt');
    dt.textContent = title;
    const dd = document.createElement('dd');
    dd.textContent = items.length ? items.map((i) => i.display).join(', ') : 'none recorded';
    return [dt, dd];
  }));
  return true;
}
