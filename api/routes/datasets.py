"""``/v1/datasets``: upload (streamed, vetted, de-duplicated per user), list, read, delete.

Built-ins are the core's registry (``hm2bp_core.data.BUILTINS``), each with its facts and whether
this service has its files."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, Response, status

from hm2bp_service.datasets import BuiltinStatus, builtin_status, builtins
from hm2bp_service.store import DatasetRecord
from hm2bp_service.uploads import accept_upload

from .. import schemas
from ..blocking import upload_reader_thread
from ..dataset_intake import receive_upload
from ..deps import ServicesDep, UserDep, not_found

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {
                "file": {"type": "string", "format": "binary",
                         "description": ".npz (x_train, y_train, x_test, y_test), a zip of IDX files or a zip of "
                                        "N-MNIST .bin files (Train|Test/<class>/*.bin)"},
                "name": {"type": "string", "maxLength": 256},
                "format": {"type": "string", "enum": ["npz", "idx", "nmnist"], "description": "detected when omitted"},
            },
        }}},
    }
}
ERRORS = {code: {"model": schemas.ErrorBody} for code in (400, 401, 404, 409, 413, 415, 422)}


def record(row: DatasetRecord) -> schemas.Dataset:
    return schemas.Dataset(id=row.id, name=row.name, format=row.format, kind=row.kind,
                           num_samples=row.num_train + row.num_test, num_train=row.num_train, num_test=row.num_test,
                           num_classes=row.num_classes, input_shape=row.input_shape, time_steps=row.time_steps,
                           sha256=row.sha256, size_bytes=row.size_bytes, created_at=row.created_at)


def builtin_record(found: BuiltinStatus) -> schemas.Dataset:
    facts = found.builtin.facts
    return schemas.Dataset(id=found.id, name=facts.name, format="builtin", kind=facts.kind,
                           num_samples=facts.num_train + facts.num_test, num_train=facts.num_train,
                           num_test=facts.num_test, num_classes=facts.num_classes, input_shape=list(facts.input_shape),
                           time_steps=facts.time_steps, sha256=None, size_bytes=None, created_at=None,
                           available=found.usable, note=found.note)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=schemas.Dataset, openapi_extra=UPLOAD_BODY,
             responses={200: {"model": schemas.Dataset, "description": "the same file was uploaded before"}, **ERRORS})
async def upload_dataset(request: Request, response: Response, user: UserDep, services: ServicesDep):
    """Upload a dataset file; 201 with its record, or 200 with the earlier record of the same file
    (``duplicate: true``; it keeps its first name: one record per file and user, whatever name the
    new upload asked for)."""
    upload = await receive_upload(request, services.settings)
    try:
        row, created = await upload_reader_thread(request, accept_upload, services, user.id, upload)
    finally:
        upload.discard()  # when it never reached the thread (a cancelled wait); else already done there
    if created:
        return record(row)
    response.status_code = status.HTTP_200_OK
    return record(row).model_copy(update={"duplicate": True})


@router.get("", response_model=schemas.DatasetList, responses=ERRORS)
def list_datasets(user: UserDep, services: ServicesDep) -> schemas.DatasetList:
    """The built-in datasets, then the caller's uploads (newest first)."""
    return schemas.DatasetList(items=[*map(builtin_record, builtins(services.settings)),
                                      *map(record, services.store.datasets.of_user(user.id))])


@router.get("/{dataset_id}", response_model=schemas.Dataset, responses=ERRORS)
def get_dataset(dataset_id: Annotated[str, Path(max_length=64)], user: UserDep,
                services: ServicesDep) -> schemas.Dataset:
    found = builtin_status(dataset_id, services.settings)
    if found is not None:
        return builtin_record(found)
    row = services.store.datasets.get(user.id, dataset_id)
    if row is None:
        raise not_found("dataset", dataset_id)
    return record(row)


@router.delete("/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response, responses=ERRORS)
def delete_dataset(dataset_id: Annotated[str, Path(max_length=64)], user: UserDep, services: ServicesDep) -> Response:
    """Delete an upload (409 while a job that has not ended uses it); built-ins cannot be deleted."""
    if builtin_status(dataset_id, services.settings) is not None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "built-in datasets cannot be deleted")
    row = services.store.datasets.get(user.id, dataset_id)
    if row is None:
        raise not_found("dataset", dataset_id)
    if services.store.datasets.in_use(dataset_id):
        raise HTTPException(status.HTTP_409_CONFLICT, f"dataset {dataset_id!r} is used by a job that has not ended")
    services.store.datasets.delete(dataset_id, services.artifacts.remove)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
