"""A real FHIR client library (fhirpy, the Beda/Health Samurai client) against a running Cairn.

Creates, reads, searches (with paging, _include and counts), saves conditionally, updates (with
and without version checks) and deletes through fhirpy's public API only, asserting what a
client relies on.
Usage: client.py BASE_URL   (e.g. http://127.0.0.1:8080/fhir). Exits non-zero on failure.
"""

import sys
import uuid

from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound

SYSTEM = "urn:oid:2.16.840.1.113883.3.72.5.9.1"


def main(base, token):
    client = SyncFHIRClient(base, authorization=f"Bearer {token}")
    run = uuid.uuid4().hex[:10]
    family = f"Fhirpy{run}"

    # create
    patient = client.resource(
        "Patient",
        identifier=[{"system": SYSTEM, "value": f"MRN-{run}"}],
        name=[{"family": family, "given": ["Ada"]}],
        birthDate="1990-04-01",
        gender="female",
    )
    patient.save()
    assert patient.id, "the created Patient has an id"
    assert patient["meta"]["versionId"] == "1", patient["meta"]

    # read
    fetched = client.reference("Patient", patient.id).to_resource()
    assert fetched["name"][0]["family"] == family
    assert fetched["birthDate"] == "1990-04-01"

    # search by identifier, by family and by birthdate
    found = client.resources("Patient").search(identifier=f"{SYSTEM}|MRN-{run}").fetch()
    assert [p.id for p in found] == [patient.id], found
    found = client.resources("Patient").search(family=family, birthdate="1990").fetch()
    assert [p.id for p in found] == [patient.id], found
    assert client.resources("Patient").search(identifier=f"{SYSTEM}|nobody-{run}").fetch() == []

    # update: the new version is what is read back
    fetched["gender"] = "other"
    fetched["telecom"] = [{"system": "phone", "value": "+1 555 0100"}]
    fetched.save()
    again = client.reference("Patient", patient.id).to_resource()
    assert again["gender"] == "other"
    assert again["meta"]["versionId"] == "2", again["meta"]
    assert client.resources("Patient").search(telecom="+1 555 0100", family=family).fetch()[0].id == patient.id

    # doses for the patient, searched with _include, paged with fetch_all
    for day in range(1, 26):
        client.resource(
            "Immunization",
            status="completed",
            vaccineCode={"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "207"}]},
            patient=patient.to_reference(),
            occurrenceDateTime=f"2021-01-{day:02d}",
            lotNumber=f"LOT-{run}-{day}",
        ).save()
    doses = client.resources("Immunization").search(patient=patient.id).limit(10).fetch_all()
    assert len(doses) == 25, len(doses)
    assert len({d.id for d in doses}) == 25, "paging repeats nothing"
    bundle = (
        client.resources("Immunization")
        .search(patient=patient.id, date="ge2021-01-20")
        .include("Immunization", "patient")
        .fetch_raw()
    )
    modes = sorted(e["search"]["mode"] for e in bundle["entry"])
    assert modes == ["include"] + ["match"] * 6, modes
    newest_first = client.resources("Immunization").search(patient=patient.id).sort("-date").limit(3).fetch()
    assert [d["occurrenceDateTime"][:10] for d in newest_first] == ["2021-01-25", "2021-01-24", "2021-01-23"], newest_first

    # count: fhirpy asks `_count=0&_totalMethod=count` and reads Bundle.total
    assert client.resources("Immunization").search(patient=patient.id).count() == 25
    assert client.resources("Immunization").search(patient=patient.id, date="ge2021-01-20").count() == 6
    assert client.resources("Patient").search(identifier=f"{SYSTEM}|nobody-{run}").count() == 0

    # conditional save: POST with the criteria in the query creates once, then finds the match
    twin = client.resource(
        "Patient",
        identifier=[{"system": SYSTEM, "value": f"TWIN-{run}"}],
        name=[{"family": f"Twin{run}"}],
    )
    twin.save(search_params={"identifier": f"{SYSTEM}|TWIN-{run}"})
    again = client.resource(
        "Patient",
        identifier=[{"system": SYSTEM, "value": f"TWIN-{run}"}],
        name=[{"family": f"Twin{run}"}],
    )
    again.save(search_params={"identifier": f"{SYSTEM}|TWIN-{run}"})
    assert again.id == twin.id, (again.id, twin.id)
    assert client.resources("Patient").search(identifier=f"{SYSTEM}|TWIN-{run}").count() == 1

    # a resource the server refuses comes back as an OperationOutcome the client understands
    try:
        client.resource("Patient", birthDate="not-a-date").save()
        raise AssertionError("an invalid birthDate was accepted")
    except OperationOutcome as outcome:
        assert "birthDate" in str(outcome), outcome

    # delete: the client sees the resource gone
    client.reference("Patient", patient.id).to_resource()
    doses[0].delete()
    try:
        client.reference("Immunization", doses[0].id).to_resource()
        raise AssertionError("a deleted Immunization was read")
    except ResourceNotFound:
        pass
    # transaction: a patient and their dose linked by urn:uuid, posted to the base
    patient_url = f"urn:uuid:{uuid.uuid4()}"
    answer = client.execute(
        "",
        method="post",
        data={
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": {
                        "resourceType": "Immunization",
                        "status": "completed",
                        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "208"}]},
                        "patient": {"reference": patient_url},
                        "occurrenceDateTime": "2021-04-01",
                    },
                    "request": {"method": "POST", "url": "Immunization"},
                },
                {
                    "fullUrl": patient_url,
                    "resource": {
                        "resourceType": "Patient",
                        "identifier": [{"system": SYSTEM, "value": f"TX-{run}"}],
                        "name": [{"family": f"Tx{run}"}],
                    },
                    "request": {"method": "POST", "url": "Patient"},
                },
            ],
        },
    )
    assert answer["type"] == "transaction-response", answer["type"]
    statuses = [e["response"]["status"] for e in answer["entry"]]
    assert statuses == ["201 Created", "201 Created"], statuses
    tx_patient = client.resources("Patient").search(identifier=f"{SYSTEM}|TX-{run}").get()
    dose = client.resources("Immunization").search(patient=tx_patient.id).get()
    assert dose["patient"]["reference"] == f"Patient/{tx_patient.id}", dose["patient"]

    print(
        f"fhirpy: create, read, search, count, conditional save, update, paging, _include, _sort, "
        f"delete and a transaction work ({patient.id})"
    )


if __name__ == "__main__":
    # The bearer token comes on stdin, never on the command line.
    main(sys.argv[1], sys.stdin.read().strip())
