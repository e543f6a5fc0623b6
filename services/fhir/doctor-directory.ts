import type { Page } from "../../lib/domain/paging";
import type { Doctor } from "../doctors/queries";
import { callDomain, noneIfNotFound } from "./domain";
import type { FhirContext } from "./resource";
import type { SearchRequest } from "./search";

/**
 * The doctors a search of Practitioner, PractitionerRole or Schedule means:
 * each of those is one doctor seen another way, so they share their id.
 */
export interface DoctorCriteria {
	id?: string;
	name?: string;
	specialization?: string;
}

export async function findDoctors(ctx: FhirContext, request: SearchRequest, criteria: DoctorCriteria): Promise<{ doctors: Doctor[]; total: number }> {
	if (criteria.id !== undefined) {
		const found = await callDomain<Doctor>(ctx, "doctors.get", { id: criteria.id }).then(d => [d], noneIfNotFound<Doctor>);
		const kept = found.filter(
			d => (!criteria.name || d.name.toLowerCase().startsWith(criteria.name.toLowerCase())) && (!criteria.specialization || d.specialization === criteria.specialization)
		);
		return { doctors: request.page === 1 ? kept : [], total: kept.length };
	}
	const page = await callDomain<Page<Doctor>>(ctx, "doctors.list", {
		page: request.page,
		pageSize: request.count,
		...(criteria.name && { search: criteria.name }),
		...(criteria.specialization && { specialization: criteria.specialization })
	});
	return { doctors: page.rows, total: page.total };
}

export function readDoctor(ctx: FhirContext, id: string): Promise<Doctor> {
	return callDomain<Doctor>(ctx, "doctors.get", { id });
}
